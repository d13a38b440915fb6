#!/usr/bin/env bash
# Makes target/py-venv: the Python readers the tests check maskflow's files with, from PyPI:
# - huggingface_hub (tests/it/hub.rs): reads the hub cache maskflow writes (scan_cache_dir,
#   hf_hub_download offline);
# - tensorboard (tests/it/report_tensorboard.rs): reads the event files of a run
#   (EventAccumulator).
# A scratch venv under target/, never committed; .ci/run calls this. Prints the venv's python.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/py-venv
if ! "$venv/bin/python" -c "import huggingface_hub, tensorboard" >/dev/null 2>&1; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "huggingface_hub==2.4.0" "tensorboard==2.21.0"
fi
echo "$venv/bin/python"
