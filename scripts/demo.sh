#!/usr/bin/env bash
# The main job on the bundled demo: set up, make the demo clip (cached), run the pipeline.
#   bash scripts/demo.sh              # alerts -> var/demo/alerts.jsonl, video -> var/demo/annotated.mp4
#   bash scripts/demo.sh --loop       # play the clip again and again: the web console stays up until Ctrl-C
#   bash scripts/demo.sh --farm       # the farm application instead: three cameras, the 6-class farm model,
#                                     # configs/farm-example.yaml -> var/farm/alerts.jsonl, var/farm/annotated-*.mp4
set -euo pipefail
MASKWATCH_EXTRAS=dev source "$(dirname "$0")/setup.sh"

if [ "${1:-}" = "--farm" ]; then
  shift
  for s in gate_crowding animal_on_track cow_down; do
    if [ ! -f "var/farm/$s/video.mp4" ]; then
      echo "demo: generating the farm clip var/farm/$s (once; cached)"
      maskwatch synth farm --scenario "$s" --seed 7 --seconds 20 --out "var/farm/$s"
    fi
  done
  maskwatch check configs/farm-example.yaml
  rm -f var/farm/alerts.jsonl
  maskwatch run configs/farm-example.yaml --save-video var/farm/annotated.mp4 --summary var/farm/summary.json "$@"
  echo "demo: $(wc -l < var/farm/alerts.jsonl 2>/dev/null || echo 0) alert events in var/farm/alerts.jsonl," \
       "annotated videos in var/farm/annotated-<camera>.mp4"
  exit 0
fi

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
