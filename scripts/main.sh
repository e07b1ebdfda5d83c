#!/usr/bin/env bash
# The lab's main job on the embedded default: set up, build the corpus and
# tokenizer, then execute every notebook (outputs under data/<scale>/outputs).
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE=${SCALE:-default}
bash scripts/setup.sh
.venv/bin/python -m lab data build --scale "$SCALE"
.venv/bin/python -m lab notebooks --scale "$SCALE"
