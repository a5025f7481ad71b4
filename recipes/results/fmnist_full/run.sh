#!/bin/bash
# The cells of PROTOCOL.md, most informative first. Resumable: cells already collected under
# cells/ (or full_data/) are skipped, an interrupted cell in runs/ continues from its last epoch.
# Run from the repository root:  bash recipes/results/fmnist_full/run.sh [stage1|full_data|...]
# Each finished cell's config.json, summary.json and history.csv land in the results folder;
# commit them (never runs/, which holds the weights).
set -u
KW=${KW:-keras-wrs}
HERE=recipes/results/fmnist_full
JOBS=${JOBS:-1}
sweep() {  # sweep OUT RESULTS [keras-wrs sweep arguments...]
  local out=$1 results=$2; shift 2
  local resume=(); [ -d "$out" ] && [ -n "$(ls -A "$out")" ] && resume=(--resume)
  $KW sweep fmnist_resnet9 --out "$out" "${resume[@]}" --results "$results" --jobs "$JOBS" \
    --set plots=false --set tensorboard=false --verbose 2 "$@"
}
VAL=(--set validation_examples=6000)
SGD="optimizer=sgdm"
ADAM="optimizer=adam"
ADAM_WD="weight_decay=5e-2"
stage=${1:-all}
# METHODS="wd wrs" keeps the stage-2 and confirmation cells of those methods only (default: all).
want() { [ -z "${METHODS:-}" ] || [[ " $METHODS " == *" $1 "* ]]; }
if [ "$stage" = all ] || [ "$stage" = stage1 ]; then
  # Stage 1, seed 0: WD and WRS at the default lr, the benchmark, then the lr grids.
  sweep runs/fmnist_full/cells $HERE/cells "${VAL[@]}" --seeds 0 \
    --grid "$SGD regularization=wd,wrs lr=0.2"
fi
if [ "$stage" = all ] || [ "$stage" = full_data ]; then
  # The benchmark: all 60,000 training images, test accuracy after every epoch.
  sweep runs/fmnist_full/full_data $HERE/full_data --seeds 0 \
    --grid "$SGD regularization=wrs,wd lr=0.2"
fi
if [ "$stage" = all ] || [ "$stage" = stage1 ]; then
  sweep runs/fmnist_full/cells $HERE/cells "${VAL[@]}" --seeds 0 \
    --grid "$SGD regularization=wd,wrs lr=0.2" \
    --grid "$SGD regularization=wd,wrs lr=0.1,0.4" \
    --grid "$SGD regularization=none lr=0.2" \
    --grid "$SGD regularization=wd,wrs lr=0.05,0.8" \
    --grid "$SGD regularization=none lr=0.05,0.1,0.4,0.8"
  # Adam: Keras Adam has no Nesterov switch; the recipe's optimizer_kwargs are cleared.
  sweep runs/fmnist_full/cells $HERE/cells "${VAL[@]}" --seeds 0 --set 'optimizer_kwargs={}' \
    --grid "$ADAM regularization=wd,wrs lr=1e-3 $ADAM_WD" \
    --grid "$ADAM regularization=wd,wrs lr=5e-4,2e-3 $ADAM_WD" \
    --grid "$ADAM regularization=none lr=1e-3 $ADAM_WD" \
    --grid "$ADAM regularization=wd,wrs lr=2.5e-4,4e-3 $ADAM_WD" \
    --grid "$ADAM regularization=none lr=2.5e-4,5e-4,2e-3,4e-3 $ADAM_WD"
fi
if [ "$stage" = all ] || [ "$stage" = stage2 ]; then
  # Stage 2 of PROTOCOL.md, placed by its rule from the stage-1 cells
  # (keras_wrs.recipes.sweeps.evidence.stage_two; tests/recipes/test_results.py checks these grids against it).
  # SGD-momentum: WD best at lr 0.2, WRS best at lr 0.2, none best at lr 0.4.
  grids=()
  want wd && grids+=(--grid "$SGD regularization=wd lr=0.2 weight_decay=0.00125,0.0025,0.01,0.02")
  want wrs && grids+=(--grid "$SGD regularization=wrs lr=0.07071,0.1414,0.2828,0.5657")
  want none && grids+=(--grid "$SGD regularization=none lr=0.1414,0.2828,0.5657,1.131")
  # The toolkit's methods (stage `toolkit`): SGDP best at lr 0.4, corrected WD at lr 0.2.
  want sgdp && grids+=(--grid "$SGD regularization=sgdp lr=0.4 weight_decay=0.00125,0.0025,0.01,0.02")
  want cwd && grids+=(--grid "$SGD regularization=cwd lr=0.2 weight_decay=0.00125,0.0025,0.01,0.02")
  [ "${#grids[@]}" -eq 0 ] || sweep runs/fmnist_full/cells $HERE/cells "${VAL[@]}" --seeds 0 "${grids[@]}"
  # Adam: WD, WRS and none all best at lr 4e-3, the top of the stage-1 grid.
  grids=()
  want wd && grids+=(--grid "$ADAM regularization=wd lr=0.004 weight_decay=0.0125,0.025,0.1,0.2")
  want wrs && grids+=(--grid "$ADAM regularization=wrs lr=0.001414,0.002828,0.005657,0.01131 $ADAM_WD")
  want none && grids+=(--grid "$ADAM regularization=none lr=0.001414,0.002828,0.005657,0.01131 $ADAM_WD")
  # The toolkit's methods (stage `toolkit`): AdamP and AdamC both best at lr 4e-3, the top of the grid.
  want sgdp && grids+=(--grid "$ADAM regularization=sgdp lr=0.004 weight_decay=0.0125,0.025,0.1,0.2")
  want cwd && grids+=(--grid "$ADAM regularization=cwd lr=0.004 weight_decay=0.0125,0.025,0.1,0.2")
  # AdamH best at lr 0.02 of its own grid, its decay the recipe's 5e-3 (PROTOCOL.md, deviations).
  want adamh && grids+=(--grid "$ADAM regularization=adamh lr=0.02 weight_decay=0.00125,0.0025,0.01,0.02")
  [ "${#grids[@]}" -eq 0 ] || sweep runs/fmnist_full/cells $HERE/cells "${VAL[@]}" --seeds 0 \
    --set 'optimizer_kwargs={}' "${grids[@]}"
fi
if [ "$stage" = all ] || [ "$stage" = confirm ]; then
  # Confirmation: every method's chosen setting (best of its stage-1 and stage-2 trials, from the
  # committed cells; a method with fewer than 9 trials is named on stderr and waits) over seeds
  # 1-5, a few seeds at a time so that complete pairs come first: as many seeds a sweep as keep
  # all JOBS busy (2 methods, JOBS=2: one seed; 3 methods: two).
  # OPTIMIZERS picks the optimizers whose tuning is complete (default: sgdm).
  PY=${PY:-python3}
  for opt in ${OPTIMIZERS:-sgdm}; do
    extra=(); [ "$opt" = adam ] && extra=(--set 'optimizer_kwargs={}')
    grids=()
    while read -r g; do
      want "$(sed -E 's/.*regularization=([a-z]+).*/\1/' <<<"$g")" && grids+=(--grid "$g")
    done \
      < <("$PY" -m keras_wrs.recipes.sweeps.evidence chosen $HERE/cells "$opt")
    [ "${#grids[@]}" -gt 0 ] || { echo "run.sh: no chosen setting for $opt" >&2; exit 1; }
    g=$JOBS m=$(( ${#grids[@]} / 2 ))  # g = gcd(methods, JOBS)
    while [ "$m" -gt 0 ]; do t=$(( g % m )) g=$m m=$t; done
    per=$(( JOBS / g ))  # seeds a sweep
    for first in 1 $(( 1 + per )) $(( 1 + 2 * per )) $(( 1 + 3 * per )) $(( 1 + 4 * per )); do
      [ "$first" -le 5 ] || break
      seeds=$(seq -s, "$first" $(( first + per - 1 < 5 ? first + per - 1 : 5 )))
      sweep runs/fmnist_full/cells $HERE/cells "${VAL[@]}" --seeds "$seeds" "${extra[@]}" "${grids[@]}"
    done
  done
fi
if [ "$stage" = all ] || [ "$stage" = toolkit ]; then
  # Stage 1 of the scale-invariance toolkit's methods on the same lr grids: SGDP/AdamP (sgdp) and
  # corrected weight decay (cwd) at each optimizer's default weight decay; AdamH (adamh, Adam only) on
  # its own grid, its lr being the angle per step (PROTOCOL.md, deviations, 2026-12-07).
  sweep runs/fmnist_full/cells $HERE/cells "${VAL[@]}" --seeds 0 \
    --grid "$SGD regularization=sgdp,cwd lr=0.2" \
    --grid "$SGD regularization=sgdp,cwd lr=0.1,0.4" \
    --grid "$SGD regularization=sgdp,cwd lr=0.05,0.8"
  sweep runs/fmnist_full/cells $HERE/cells "${VAL[@]}" --seeds 0 --set 'optimizer_kwargs={}' \
    --grid "$ADAM regularization=sgdp,cwd lr=1e-3 $ADAM_WD" \
    --grid "$ADAM regularization=sgdp,cwd lr=5e-4,2e-3 $ADAM_WD" \
    --grid "$ADAM regularization=sgdp,cwd lr=2.5e-4,4e-3 $ADAM_WD" \
    --grid "$ADAM regularization=adamh lr=0.01" \
    --grid "$ADAM regularization=adamh lr=0.005,0.02" \
    --grid "$ADAM regularization=adamh lr=0.0025,0.04"
fi
if [ "$stage" = all ] || [ "$stage" = zero_shot ]; then
  # Zero-shot rows: the CIFAR ResNet-20 at 28x28, every method at its optimizer's defaults (AdamH
  # too: lr 1e-3), nothing tuned; seed 1 for every method first, then 2 and 3. The recipe's lr and
  # decay are SGD-momentum's defaults; Adam's are set (tests/recipes/test_results.py checks both).
  for seed in 1 2 3; do
    sweep runs/fmnist_full/cells $HERE/cells "${VAL[@]}" --seeds $seed \
      --grid "model=resnet20 $SGD regularization=none,wd,wrs,sgdp,cwd"
    sweep runs/fmnist_full/cells $HERE/cells "${VAL[@]}" --seeds $seed --set 'optimizer_kwargs={}' \
      --grid "model=resnet20 $ADAM regularization=none,wd,wrs,sgdp,cwd,adamh lr=1e-3 $ADAM_WD"
  done
fi
