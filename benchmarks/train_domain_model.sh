#!/usr/bin/env bash
# Recipe of the domain-randomised embedded model candidate (issue 13): the synthetic cpu benchmark mixed
# 50/50 with patches from the domain-randomised generator (real SynthSeg anatomies + real MS/stroke masks).
# Resumable: rerun the same command after an interruption. Usage:
#   bash benchmarks/train_domain_model.sh OUT_DIR [SHARED_DATA_DIR] [EXPERT_EPOCHS] [MOME_EPOCHS] [DOMAIN_FRACTION] \
#       [NO_LESION_SHARE] [INTENSITY_SHIFT] [MIN_CNR] [-- EXTRA TRAIN OPTIONS]
# Options after `--` go to both `mome train` commands (e.g. `-- --patch-size 64`).
# MIN_CNR > 0 trains on the benchmark's training cases whose labelled lesion has |CNR| >= MIN_CNR only
# (`mome collection visible`): the paper's shared labels put lesions T1 does not show on T1 images.
# Then measure on the real cases:
#   python benchmarks/embedded_model.py --model OUT_DIR/mome/final --collection OUT_DIR/synth/collection.json \
#       --per-task 2 --real SHARED_DATA_DIR/real/ms_patient07
set -euo pipefail
positional=() extra=()
while [ $# -gt 0 ]; do
  if [ "$1" = "--" ]; then shift; extra=("$@"); break; fi
  positional+=("$1"); shift
done
set -- "${positional[@]}"
out=${1:?output folder}
shared=${2:-../shared/data}
expert_epochs=${3:-20}
mome_epochs=${4:-10}
fraction=${5:-0.5}
no_lesion=${6:-0.3}
shift=${7:-0}
min_cnr=${8:-0}
mkdir -p "$out"
[ -f "$out/synth/collection.json" ] || mome synth --preset cpu --out "$out/synth" --seed 0
collection="$out/synth/collection.json"
if [ "$min_cnr" != 0 ]; then
  collection="$out/synth/collection_cnr$min_cnr.json"
  [ -f "$collection" ] || mome collection visible "$out/synth/collection.json" --min-cnr "$min_cnr" --out "$collection"
fi
common=(--collection "$collection" --preset cpu --precision 32 --iterations 25 --seed 0
        --label-maps "$shared/label_maps/synthseg" --lesion-masks "$shared/lesion_masks" --domain-fraction "$fraction"
        --domain-no-lesion "$no_lesion" --intensity-shift "$shift"
        --num-workers 1 --no-progress "${extra[@]}")
mome train experts "${common[@]}" --epochs "$expert_epochs" --out "$out/experts"
mome train mome "${common[@]}" --epochs "$mome_epochs" --experts "$out/experts" --out "$out/mome"
