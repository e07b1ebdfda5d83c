#!/usr/bin/env bash
# The lab's main job on the embedded default: set up, build the corpus and
# tokenizer, run the budget study (every method into the results store; resumable),
# then execute every notebook (outputs under data/<scale>/outputs).
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE=${SCALE:-default}
bash scripts/setup.sh
.venv/bin/python -m lab data build --scale "$SCALE"
# One single-threaded worker per core (Ray): the lab's small models use a second thread poorly, so on the
# 2-core reference machine two workers do 1.25-1.42x the work of one two-threaded process (README, "Time").
WORKERS=${WORKERS:-$(nproc)}
PARALLEL=()
if [ "$WORKERS" -gt 1 ]; then PARALLEL=(--workers "$WORKERS"); fi
# A failed step leaves the rest of the study done; notebook 07 reports it, so go on to the notebooks.
.venv/bin/python -m lab study --scale "$SCALE" "${PARALLEL[@]}" || echo "study: some steps failed (listed above)" >&2
.venv/bin/python -m lab notebooks --scale "$SCALE"
