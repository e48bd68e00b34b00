#!/usr/bin/env bash
# Retrain the default model from scratch: synthetic corpus -> training -> held-out eval
# against zero flow, Farneback and DIS. Runs on a GPU when there is one (bf16), else on CPU.
#
#   tools/train_default_model.sh [OUT_DIR] [extra `flowvid train` arguments...]
#
# Environment: PYTHON (default: .venv/bin/python, else python3), SYNTH (corpus folder,
# default data/synth), WORKERS (processes for the corpus, default: all cores).
# Then `python tools/ship_default_model.py OUT_DIR/run/model.pt` makes it the default model.
set -euo pipefail
OUT=${1:-runs/default_model}
shift || true
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
SYNTH=${SYNTH:-data/synth}
FLOWVID=("$PYTHON" -m flowvid)

if [[ ! -f "$SYNTH/dataset.yaml" ]]; then
    "${FLOWVID[@]}" synth --out "$SYNTH" ${WORKERS:+--workers "$WORKERS"}
fi
"${FLOWVID[@]}" validate "$SYNTH"
"${FLOWVID[@]}" train --config configs/flow_lite0.yaml --data "$SYNTH" --run-dir "$OUT/run" "$@"
"${FLOWVID[@]}" eval --data "$SYNTH" --split test --checkpoint "$OUT/run/model.pt" \
    --baselines --out "$OUT/eval"
echo "model: $OUT/run/model.pt; report: $OUT/eval/report.md"
