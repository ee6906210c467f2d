#!/usr/bin/env bash
# The synthetic clips behind the README's accuracy tables (10 s, 1280x720, 15 fps, H.264 + gt.json):
#   var/eval  held-out clips (seeds 20,000,021..28): reported figures, never used to choose a setting
#   var/tune  tuning clips (seeds 30,000,021..31): where tracker settings are chosen
#   var/eval-farm  held-out farm clips (seeds 20,000,021..26) for the 6-class model (`cow`); apart from var/eval,
#             whose tables are of the 5-class model
# Neither range is used for training (training seeds start at 0, validation seeds at 10,000,000).
#   bash scripts/make_eval_clips.sh [eval|tune|farm|all]      (default all; existing clips are kept)
set -euo pipefail
cd "$(dirname "$0")/.."
MW=${MASKWATCH:-.venv/bin/maskwatch}
which=${1:-all}

clip() {  # dir scene seed [scenario]
  local out=$1 scene=$2 seed=$3 scenario=${4:-}
  [[ -f $out/gt.json && -f $out/video.mp4 ]] && return 0
  "$MW" synth "$scene" --seed "$seed" --seconds 10 ${scenario:+--scenario "$scenario"} --out "$out"
}

if [[ $which == eval || $which == all ]]; then
  clip var/eval/site-20000021 site 20000021
  clip var/eval/site-20000022 site 20000022 truck_reverse
  clip var/eval/pitch-20000023 pitch 20000023
  clip var/eval/pitch-20000024 pitch 20000024 box_entry
  for s in 20000025 20000026 20000027; do clip var/eval/pitch-$s pitch $s; done
  clip var/eval/site-20000025 site 20000025
  clip var/eval/site-20000026 site 20000026 excavator_swing
  clip var/eval/site-20000027 site 20000027
  clip var/eval/site-20000028 site 20000028 truck_reverse
fi
if [[ $which == farm || $which == all ]]; then
  clip var/eval-farm/farm-20000021 farm 20000021
  clip var/eval-farm/farm-20000022 farm 20000022 gate_crowding
  clip var/eval-farm/farm-20000023 farm 20000023
  clip var/eval-farm/farm-20000024 farm 20000024 animal_on_track
  clip var/eval-farm/farm-20000025 farm 20000025
  clip var/eval-farm/farm-20000026 farm 20000026 cow_down
fi
if [[ $which == tune || $which == all ]]; then
  clip var/tune/site-30000021 site 30000021
  clip var/tune/site-30000022 site 30000022 truck_reverse
  clip var/tune/pitch-30000023 pitch 30000023
  clip var/tune/pitch-30000024 pitch 30000024 box_entry
  for s in 30000025 30000026 30000027; do clip var/tune/pitch-$s pitch $s; done
  for s in 30000025 30000026; do clip var/tune/site-$s site $s; done
  for s in 30000028 30000029; do clip var/tune/pitch-$s pitch $s; done
  clip var/tune/site-30000027 site 30000027
  clip var/tune/site-30000028 site 30000028 excavator_swing
  clip var/tune/site-30000029 site 30000029
  clip var/tune/site-30000030 site 30000030 truck_reverse
  clip var/tune/site-30000031 site 30000031
fi
