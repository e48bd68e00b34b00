#!/usr/bin/env bash
# Retrain the default model with the curriculum: ImageNet -> generic motion (rendered on the
# fly) -> synthetic vessels; then score it on the held-out vessel clips (beside zero flow,
# Farneback and DIS) and on the motion sanity suite. GPU when there is one (bf16), else CPU.
#
#   tools/train_default_model.sh [OUT_DIR] [extra `flowvid train` arguments for both stages...]
#
# Environment: PYTHON (default: .venv/bin/python, else python3), SYNTH (vessel corpus, every look,
# default data/synth_looks), WORKERS (processes for the corpus, default: all cores),
# MOTION_STEPS / VESSEL_STEPS (default: the stage configs' max_steps), STAGES (default "1 2":
# "1" or "2" alone runs one stage, e.g. one per session on a machine with a time limit per
# command), MOTION_MODEL (stage 2's start, default OUT_DIR/1_motion/model.pt).
# Then `python tools/ship_default_model.py OUT_DIR/2_vessels/model.pt` makes it the default.
set -euo pipefail
OUT=${1:-runs/default_model}
shift || true
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
SYNTH=${SYNTH:-data/synth_looks}
FLOWVID=("$PYTHON" -m flowvid)
STAGES=${STAGES:-1 2}
MOTION_MODEL=${MOTION_MODEL:-$OUT/1_motion/model.pt}
mkdir -p "$OUT"

if [[ " $STAGES " == *" 1 "* ]]; then
    "${FLOWVID[@]}" train --config configs/curriculum/1_motion.yaml --run-dir "$OUT/1_motion" \
        ${MOTION_STEPS:+--set train.max_steps="$MOTION_STEPS"} "$@" 2>&1 | tee "$OUT/1_motion.log"
    "${FLOWVID[@]}" eval --suite motion --checkpoint "$OUT/1_motion/model.pt" \
        --out "$OUT/1_motion/suite"
fi
[[ " $STAGES " == *" 2 "* ]] || exit 0

if [[ ! -f "$SYNTH/dataset.yaml" ]]; then
    "${FLOWVID[@]}" synth --out "$SYNTH" --looks all ${WORKERS:+--workers "$WORKERS"}
fi
"${FLOWVID[@]}" validate "$SYNTH"
"${FLOWVID[@]}" train --config configs/curriculum/2_vessels.yaml --data "$SYNTH" \
    --run-dir "$OUT/2_vessels" --init-from "$MOTION_MODEL" \
    ${VESSEL_STEPS:+--set train.max_steps="$VESSEL_STEPS"} "$@" 2>&1 | tee "$OUT/2_vessels.log"
"${FLOWVID[@]}" eval --suite motion --checkpoint "$OUT/2_vessels/model.pt" --out "$OUT/2_vessels/suite"
"${FLOWVID[@]}" eval --data "$SYNTH" --split test --checkpoint "$OUT/2_vessels/model.pt" \
    --baselines --out "$OUT/2_vessels/eval"
echo "model: $OUT/2_vessels/model.pt; reports: $OUT/*/suite/motion_suite.md, $OUT/2_vessels/eval/report.md"
