#!/usr/bin/env bash
# Sets up the test environment (.venv, CPU torch, tiny-model deps) if needed, lints, and runs the tests.
#   bash tests/run.sh [pytest args...]
# SD_WEBUI_DIR=/path/to/stable-diffusion-webui additionally runs tests/webui/ against that WebUI.
# DNP_COMPAT_TRANSFORMERS="4.30.2 4.46.1" (the default) reruns the captioner tests on the WebUIs' pins;
# set it to "" to skip them.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PY=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
pip_q() { .venv/bin/python -m pip install -q --disable-pip-version-check "$@"; }
.venv/bin/python -c "import torch" 2>/dev/null || pip_q "$TORCH_SPEC"
pip_q -r tests/requirements.txt
# only the CLIP BPE vocabulary is wanted from open-clip-torch: --no-deps keeps CUDA wheels out
.venv/bin/python -c "import open_clip" 2>/dev/null || .venv/bin/python -c "import importlib.util as u; assert u.find_spec('open_clip')" 2>/dev/null \
    || pip_q --no-deps open-clip-torch
# the WebUI browser tests drive the system Chromium with Playwright (its own browser download is never used)
if [ -n "${SD_WEBUI_DIR:-}" ]; then
    .venv/bin/python -c "import playwright" 2>/dev/null || pip_q playwright
fi

.venv/bin/ruff check .

# The WebUIs' own transformers pins first, so that the main run's summary is the last line.
for version in ${DNP_COMPAT_TRANSFORMERS-4.30.2 4.46.1}; do
    echo "== captioner tests on transformers $version"
    bash tests/compat_transformers.sh "$version"
done
echo "== all tests"
.venv/bin/python -m pytest "$@"
