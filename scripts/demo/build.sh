#!/usr/bin/env bash
# Build the bundled demo from nothing, with medstyle's own commands:
#   phantom cohort -> slice datasets -> StyleGAN -> encoder -> embeddings -> directions
#   -> held-out scores and the paper's experiments -> resources/models/demo + demo session.
#
# Usage: scripts/demo/build.sh WORK_DIR [STAGE ...]
#   STAGES: data gan encoder embed directions heldout pack evaluate (default: all, in order)
# Every stage can be re-run: `gan` resumes its training, the others redo their step.
# GAN_INIT_FROM=BUNDLE starts a new `gan` run from a bundle's G and D at SIZE px (to
# continue the training of a shipped model whose run folder is gone). SNAPSHOT=FILE packs
# that checkpoint of the run instead of its best by the metric (e.g. the one that
# reconstructs best).
# Refinement runs in bf16 (--bf16: 1.7x faster on a CPU with AVX512-BF16, same error) and
# to convergence in W (500 steps at lr 0.03; the paper's 350 at 0.001 stop well short of
# it): the directions are fitted on such latents, the bundle records it, and every later
# embedding into the bundle (held out, the report, the demo session) defaults to the same.
# Settings (environment): THREADS (torch threads, default: all cores), SIZE (64),
# GAN_CONFIG (default scripts/demo/gan64_w512.json), ENCODER_KIMG (15), ENCODER_BACKBONE
# (mirror; resnet learns faster, docs/latent.md), EMBED_STEP (every Nth training slice,
# 32), REFINE_STEPS (500), REFINE_LR (0.03), TRIALS (8), HELDOUT_STEP (every Nth held-out
# slice, 16), EVAL_SIZES (medium), REPORT (docs/report_demo).
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
work=${1:?usage: scripts/demo/build.sh WORK_DIR [STAGE ...]}
shift
stages=${*:-data gan encoder embed directions heldout pack evaluate}
mkdir -p "$work"
work=$(cd "$work" && pwd)
# paths given in the environment are the caller's: make them absolute before moving to WORK_DIR
abspath() { case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
gan_config=$(abspath "${GAN_CONFIG:-$repo/scripts/demo/gan64_w512.json}")
if [ -n "${GAN_INIT_FROM:-}" ]; then GAN_INIT_FROM=$(abspath "$GAN_INIT_FROM"); fi
if [ -n "${SNAPSHOT:-}" ]; then SNAPSHOT=$(abspath "$SNAPSHOT"); fi
cd "$work"
if [ -n "${THREADS:-}" ]; then export OMP_NUM_THREADS=$THREADS; fi
size=${SIZE:-64}             # the model's matrix: the datasets are built at this size
bundle=$work/bundle          # the GAN's best snapshot, then encoder and directions
demo=$repo/resources/models/demo
report=$repo/${REPORT:-docs/report_demo}

log() { printf '\n== %s: %s\n' "$(date -u +%H:%M:%S)" "$*"; }

stage_data() {
  # 120 phantom patients: P0001-P0100 train the model, P0101-P0120 are held out
  [ -d phantom ] || medstyle phantom phantom --patients 120 --size 128 --seed 0 --quiet
  train=$(for i in $(seq -f "%04g" 1 100); do echo phantom/P$i; done)
  held=$(for i in $(seq -f "%04g" 101 120); do echo phantom/P$i; done)
  # shellcheck disable=SC2086
  [ -f train.h5 ] || medstyle dataset build $train --out train.h5 --size "$size" --quiet
  # shellcheck disable=SC2086
  [ -f heldout.h5 ] || medstyle dataset build $held --out heldout.h5 --size "$size" --quiet
}

stage_gan() {
  start=()
  if [ -d gan ]; then
    start=(--resume)
  elif [ -n "${GAN_INIT_FROM:-}" ]; then
    start=(--init-from "$GAN_INIT_FROM" --start-resolution "$size")
  fi
  medstyle train gan --data train.h5 --out gan --config "$gan_config" "${start[@]}" --quiet
}

stage_encoder() {
  # a fresh bundle of the best snapshot by the metric (or of SNAPSHOT, a checkpoint file
  # of the run): the encoder and directions go into it
  rm -rf "$bundle" encoder
  medstyle train bundle "${SNAPSHOT:-gan}" --out "$bundle"
  medstyle train encoder --model "$bundle" --out encoder --kimg "${ENCODER_KIMG:-15}" \
    --batch 8 --lr 1e-3 --backbone "${ENCODER_BACKBONE:-mirror}" --device cpu --quiet
}

stage_embed() {
  medstyle embed train.h5 --model "$bundle" --out latents_train.h5 --overwrite --quiet \
    --slices "0::${EMBED_STEP:-32}" --refine-steps "${REFINE_STEPS:-500}" \
    --refine-lr "${REFINE_LR:-0.03}" --bf16
}

stage_directions() {
  medstyle directions fit --model "$bundle" --latents latents_train.h5 \
    --trials "${TRIALS:-8}" --overwrite
}

stage_heldout() {
  # held-out patients, refined as the directions' latents were (the bundle's record):
  # reconstruction errors and direction scores
  medstyle embed heldout.h5 --model "$bundle" --out latents_heldout.h5 --overwrite --quiet \
    --slices "0::${HELDOUT_STEP:-16}" --bf16 | tee heldout_embed.txt
  medstyle directions score --model "$bundle" --latents latents_heldout.h5 | tee heldout_scores.txt
  medstyle directions score --model "$bundle" --latents latents_heldout.h5 --json > heldout_scores.json
}

stage_evaluate() {
  medstyle evaluate all --model "$demo" --data heldout.h5 --out "$report" \
    --sizes "${EVAL_SIZES:-medium}" --refine-steps "${REFINE_STEPS:-500}" \
    --refine-lr "${REFINE_LR:-0.03}" --bf16 --overwrite
}

stage_pack() {
  mkdir -p "$(dirname "$demo")"
  rm -rf "$demo.new"
  cp -r "$bundle" "$demo.new"
  du -sh "$demo.new"
  if [ -f "$demo/README.md" ]; then cp "$demo/README.md" "$demo.new/README.md"; fi
  rm -rf "$demo"
  mv "$demo.new" "$demo"
  # the demo study (held-out patient P0101) with every slice refined, opened by `medstyle`
  medstyle session "$repo/resources/demo/study" --model "$demo" \
    --out "$repo/resources/demo/demo.medstyle" --batch 32 --bf16 --overwrite --quiet
}

for stage in $stages; do
  log "$stage"
  "stage_$stage"
done
log "done"
