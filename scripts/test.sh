#!/usr/bin/env bash
# Set up, download the source packages the corpus is built from (the only
# network access, to the package registries), then run the tests offline.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m lab data fetch
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TQDM_DISABLE=1
exec .venv/bin/python -m pytest -q "$@"
