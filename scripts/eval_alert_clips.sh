#!/usr/bin/env bash
# Alert recall and precision of a model over held-out scripted site clips (the whole pipeline:
# model, tracker, zone engine), one `maskwatch eval alerts` per clip, then the totals.
#   bash scripts/eval_alert_clips.sh [MODEL] [DIR]
#   BACKEND=openvino PRECISION=bf16 bash scripts/eval_alert_clips.sh     # a given runtime and precision
# MODEL defaults to the bundled one; DIR (default var/alerts) gets the clips on first use:
# site seeds 20,000,031..36 (held out: never trained on), excavator_swing on odd seeds,
# truck_reverse on even ones, 12 s each.
set -euo pipefail
cd "$(dirname "$0")/.."
MW=${MASKWATCH:-.venv/bin/maskwatch}
model=$(realpath "${1:-models/maskwatch-demo-seg.onnx}")
dir=${2:-var/alerts}
mkdir -p "$dir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for s in 20000031 20000032 20000033 20000034 20000035 20000036; do
  sc=excavator_swing
  (( s % 2 == 0 )) && sc=truck_reverse
  clip=$dir/site-$s-$sc
  [[ -f $clip/events.json ]] || "$MW" synth site --seed "$s" --seconds 12 --scenario "$sc" --out "$clip" > /dev/null
  cat > "$work/$s.yaml" <<YAML
model: {path: "$model", conf: 0.35, iou: 0.6, backend: ${BACKEND:-auto}, precision: ${PRECISION:-auto}}
cameras: [{id: site, source: "$(realpath "$clip")/video.mp4", zones: "$(realpath "$clip")/zones.yaml"}]
alerts: {jsonl: "$work/$s.jsonl", outbox: "$work/$s.sqlite"}
YAML
  "$MW" eval alerts "$work/$s.yaml" --gt "$clip/events.json" --json "$work/$s.json" > /dev/null
done
python3 - "$work" <<'PY'
import json, sys
from pathlib import Path
gt = tp = pred = 0
for f in sorted(Path(sys.argv[1]).glob("*.json")):
    r = json.loads(f.read_text())
    print(f"{f.stem}: gt {r['gt']} predicted {r['predicted']} matched {r['matched']} "
          f"recall {r['recall']:.2f} precision {r['precision']:.2f}")
    gt += r["gt"]; pred += r["predicted"]; tp += r["matched"]
print(f"total: gt {gt} predicted {pred} matched {tp} recall {tp / max(gt, 1):.3f} precision {tp / max(pred, 1):.3f}")
PY
