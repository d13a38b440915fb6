#!/usr/bin/env bash
# Makes target/hub-venv: Python's huggingface_hub, which tests/it/hub.rs uses to read the hub
# cache maskflow writes (scan_cache_dir, hf_hub_download offline). A scratch venv under target/,
# never committed; .ci/run calls this. Prints the venv's python.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/hub-venv
if ! "$venv/bin/python" -c "import huggingface_hub" >/dev/null 2>&1; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "huggingface_hub==2.4.0"
fi
echo "$venv/bin/python"
