#!/usr/bin/env bash
# GPU smoke test, for a machine with an NVIDIA GPU: build with CUDA, run the quick-start on
# the GPU (fresh cache), and print per-step times and training throughput.
# Usage: scripts/gpu-smoke.sh   (from the repository root or anywhere)
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "nvidia-smi not found"
cargo build --release --features cuda
bin=target/release/maskflow
work=$(mktemp -d)
export MASKFLOW_CACHE="$work/cache" MASKFLOW_SAVED="$work/saved"
start=$(date +%s.%N)
"$bin" run pipelines/quickstart.mf --set train.backend=cuda --json > "$work/run.json"
end=$(date +%s.%N)
echo "quick-start on cuda: $(echo "$end - $start" | bc) s wall"
# One line per step: name, status, seconds, summary.
sed -n 's/.*"step": "\([^"]*\)".*/\1/p; s/.*"seconds": \([0-9.]*\).*/  \1 s/p; s/.*"summary": "\([^"]*\)".*/  \1/p' "$work/run.json"
"$bin" run pipelines/quickstart.mf --set train.backend=cuda
"$bin" verify pipelines/quickstart.mf --set train.backend=cuda || echo "note: CUDA steps are not guaranteed bit-reproducible"
