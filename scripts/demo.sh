#!/usr/bin/env bash
# The main job on the bundled demo: set up, make the demo clip (cached), run the pipeline.
#   bash scripts/demo.sh              # alerts -> var/demo/alerts.jsonl, video -> var/demo/annotated.mp4
#   bash scripts/demo.sh --loop       # play the clip again and again: the web console stays up until Ctrl-C
#   bash scripts/demo.sh --farm       # the farm application instead: three cameras, the 6-class farm model,
#                                     # configs/farm-example.yaml -> var/farm/alerts.jsonl, var/farm/annotated-*.mp4
set -euo pipefail
MASKWATCH_EXTRAS=dev source "$(dirname "$0")/setup.sh"

# check CONFIG, then run it with its outputs (alerts, summary, annotated video) in DIR; more args go to `run`
run_demo() {
  local config=$1 dir=$2 video=$3
  shift 3
  maskwatch check "$config"
  rm -f "$dir/alerts.jsonl"
  maskwatch run "$config" --save-video "$dir/annotated.mp4" --summary "$dir/summary.json" "$@"
  echo "demo: $(wc -l < "$dir/alerts.jsonl" 2>/dev/null || echo 0) alert events in $dir/alerts.jsonl," \
       "annotated video in $video"
}

if [ "${1:-}" = "--farm" ]; then
  shift
  for s in gate_crowding animal_on_track cow_down; do
    if [ ! -f "var/farm/$s/video.mp4" ]; then
      echo "demo: generating the farm clip var/farm/$s (once; cached)"
      maskwatch synth farm --scenario "$s" --seed 7 --seconds 20 --out "var/farm/$s"
    fi
  done
  run_demo configs/farm-example.yaml var/farm "var/farm/annotated-<camera>.mp4" "$@"
  exit 0
fi

DEMO=var/demo/site
if [ ! -f "$DEMO/video.mp4" ] || [ ! -f "$DEMO/zones.yaml" ]; then
  echo "demo: generating the demo clip into $DEMO (once; cached)"
  maskwatch synth site --scenario excavator_swing --seed 7 --seconds 20 --out "$DEMO"
fi
run_demo configs/demo.yaml var/demo var/demo/annotated.mp4 "$@"
echo "demo: the web console was at the address printed above; \`bash scripts/demo.sh --loop\` keeps it up until Ctrl-C"
