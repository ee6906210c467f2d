#!/usr/bin/env bash
# Alert recall and precision of a model over held-out scripted clips (the whole pipeline:
# model, tracker, zone engine), one `maskwatch eval alerts` per clip, then the totals.
#   bash scripts/eval_alert_clips.sh [MODEL] [DIR]
#   BACKEND=openvino PRECISION=bf16 bash scripts/eval_alert_clips.sh     # a given runtime and precision
#   SCENE=farm bash scripts/eval_alert_clips.sh MODEL                      # the farm's scenarios (6-class model)
# MODEL defaults to the bundled one; DIR (default var/alerts) gets the clips on first use (held out: never
# trained on):
#   site (default): seeds 20,000,031..36, excavator_swing on odd seeds, truck_reverse on even ones, 12 s each;
#   farm: seeds 20,000,041..46, gate_crowding, animal_on_track and cow_down in turn, 20 s each.
set -euo pipefail
cd "$(dirname "$0")/.."
MW=${MASKWATCH:-.venv/bin/maskwatch}
model=$(realpath "${1:-models/maskwatch-demo-seg.onnx}")
dir=${2:-var/alerts}
scene=${SCENE:-site}
mkdir -p "$dir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
case $scene in
  site) seeds="20000031 20000032 20000033 20000034 20000035 20000036"; seconds=12 ;;
  farm) seeds="20000041 20000042 20000043 20000044 20000045 20000046"; seconds=20 ;;
  *) echo "SCENE must be site or farm, got $scene" >&2; exit 2 ;;
esac
farm_scenarios=(gate_crowding animal_on_track cow_down)
for s in $seeds; do
  if [[ $scene == site ]]; then
    sc=excavator_swing
    (( s % 2 == 0 )) && sc=truck_reverse
  else
    sc=${farm_scenarios[$(( (s - 20000041) % 3 ))]}
  fi
  clip=$dir/$scene-$s-$sc
  [[ -f $clip/events.json ]] || "$MW" synth "$scene" --seed "$s" --seconds "$seconds" --scenario "$sc" --out "$clip" > /dev/null
  cat > "$work/$s.yaml" <<YAML
model: {path: "$model", conf: 0.35, iou: 0.6, backend: ${BACKEND:-auto}, precision: ${PRECISION:-auto}}
cameras: [{id: $scene, source: "$(realpath "$clip")/video.mp4", zones: "$(realpath "$clip")/zones.yaml"}]
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
