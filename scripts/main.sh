#!/usr/bin/env bash
# The lab's main job on the embedded default: set up, build the corpus and
# tokenizer, run the budget study (every method into the results store; resumable),
# then execute every notebook (outputs under data/<scale>/outputs).
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE=${SCALE:-default}
bash scripts/setup.sh
.venv/bin/python -m lab data build --scale "$SCALE"
# The study's independent steps run on single-threaded Ray workers, one per core: two SLM-shaped runs on
# one thread each do 1.44x the work of one on two threads (README, "Faster since the one-process study").
# WORKERS=1 keeps the study in one process, without Ray.
WORKERS=${WORKERS:-$(nproc)}
if ! [[ "$WORKERS" =~ ^[1-9][0-9]*$ ]]; then
    echo "WORKERS=$WORKERS: give a whole number of study workers, at least 1 (1: one process, no Ray)" >&2
    exit 2
fi
PARALLEL=()
if [ "$WORKERS" -gt 1 ]; then PARALLEL=(--workers "$WORKERS"); fi
# A failed step leaves the rest of the study done; notebook 07 reports it, so go on to the notebooks.
.venv/bin/python -m lab study --scale "$SCALE" "${PARALLEL[@]}" || echo "study: some steps failed (listed above)" >&2
.venv/bin/python -m lab notebooks --scale "$SCALE"
