#!/usr/bin/env bash
# Open the lab in JupyterLab: set up, then serve the repository on 127.0.0.1 with a
# token (JupyterLab's default: open the URL it prints, which carries the token), the
# file browser in notebooks/. The notebooks' empty `scale` parameter means $LAB_SCALE,
# else the scale that has results; SCALE=tiny bash scripts/lab.sh pins it. Arguments
# go to JupyterLab (e.g. --port 8890 --no-browser).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -n "${SCALE:-}" ]; then
  export LAB_SCALE="$SCALE"
fi
# JupyterLab refuses root unless told; a container or a fresh VM often has no other user.
root=()
if [ "$(id -u)" = 0 ]; then
  root=(--allow-root)
fi
exec .venv/bin/jupyter lab --ServerApp.ip=127.0.0.1 --ServerApp.root_dir="$PWD" \
  --LabApp.default_url=/lab/tree/notebooks "${root[@]}" "$@"
