#!/usr/bin/env bash
# The main job on the bundled demo: set up, make the demo clip (cached), run the pipeline.
#   bash scripts/demo.sh              # alerts -> var/demo/alerts.jsonl, video -> var/demo/annotated.mp4
#   bash scripts/demo.sh --loop       # play the clip again and again: the web console stays up until Ctrl-C
set -euo pipefail
MASKWATCH_EXTRAS=dev source "$(dirname "$0")/setup.sh"

DEMO=var/demo/site
if [ ! -f "$DEMO/video.mp4" ] || [ ! -f "$DEMO/zones.yaml" ]; then
  echo "demo: generating the demo clip into $DEMO (once; cached)"
  maskwatch synth site --scenario excavator_swing --seed 7 --seconds 20 --out "$DEMO"
fi
maskwatch check configs/demo.yaml
rm -f var/demo/alerts.jsonl
maskwatch run configs/demo.yaml --save-video var/demo/annotated.mp4 --summary var/demo/summary.json "$@"
echo "demo: $(wc -l < var/demo/alerts.jsonl 2>/dev/null || echo 0) alert events in var/demo/alerts.jsonl," \
     "annotated video in var/demo/annotated.mp4"
echo "demo: the web console was at the address printed above; \`bash scripts/demo.sh --loop\` keeps it up until Ctrl-C"
