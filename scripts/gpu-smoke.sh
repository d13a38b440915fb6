#!/usr/bin/env bash
# GPU smoke test for a machine that has an NVIDIA driver and this repository, and nothing
# else: no Rust toolchain, no network, no Python. It runs the binary from
# scripts/build-gpu-binary.sh and writes everything under $OUT (a temporary directory when
# unset), finishing within 8 minutes (stage limits: 60 + 3 × 80 + 100 + 80 s = 480 s):
#   1. `model check-weights` on the committed timm B0 fixture with the cuda backend;
#   2. one EfficientNet-B4 training step at 380x380, batch 16 and 32 in f32 and batch 32 in
#      bf16: img/s (`model bench`) and peak device memory (nvidia-smi sampled every 0.2 s,
#      less what was in use before);
#   3. the quick-start on cuda and on the CPU, each on a fresh cache: macro-F1 of both.
# $OUT/summary.txt has the figures; each stage keeps its output and stderr beside it.
#
# Usage: OUT=/some/dir scripts/gpu-smoke.sh BINARY
set -uo pipefail
if [ $# -ne 1 ] || [ ! -x "$1" ]; then
    echo "usage: OUT=DIR $0 BINARY   (BINARY from scripts/build-gpu-binary.sh)" >&2
    exit 2
fi
bin=$(realpath "$1")
cd "$(dirname "$0")/.."
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
out=$(realpath "$out")
summary="$out/summary.txt"
: > "$summary"
note() { echo "$*" | tee -a "$summary"; }
failed=0

note "binary: $bin ($(stat -c %s "$bin") bytes)"
if command -v nvidia-smi >/dev/null; then
    nvidia-smi > "$out/nvidia-smi.txt" 2>&1
    note "gpu: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -1)"
else
    note "gpu: nvidia-smi not found"
fi
note "libnvrtc: $( (ldconfig -p 2>/dev/null | grep -o 'libnvrtc\.so[.0-9]*' | sort -u | tr '\n' ' ') || true)${LD_LIBRARY_PATH:+ (LD_LIBRARY_PATH=$LD_LIBRARY_PATH)}"

# 1. Logits against timm's, on the GPU.
if timeout 60 "$bin" model check-weights --backend cuda --model efficientnet_b0 \
    --weights tests/fixtures/timm/efficientnet_b0_18.safetensors \
    --io tests/fixtures/timm/efficientnet_b0_18_io.safetensors > "$out/check-weights.txt" 2> "$out/check-weights.err"; then
    note "check-weights: $(cat "$out/check-weights.txt")"
else
    note "check-weights FAILED: $(tail -3 "$out/check-weights.err" "$out/check-weights.txt" | tr '\n' ' ')"
    failed=1
fi

# 2. B4 training steps at 380x380.
used() { nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | head -1; }
for run in f32:16 f32:32 bf16:32; do
    precision=${run%%:*} batch=${run#*:}
    base=$(used)
    ( while :; do used; sleep 0.2; done ) > "$out/memory-$precision-b$batch.txt" 2>/dev/null &
    sampler=$!
    timeout 80 "$bin" model bench --backend cuda --precision "$precision" --model efficientnet_b4 --size 380x380 --batch "$batch" --steps 2 --json \
        > "$out/bench-$precision-b$batch.json" 2> "$out/bench-$precision-b$batch.err"
    status=$?
    kill "$sampler" 2>/dev/null
    wait "$sampler" 2>/dev/null
    peak=$(sort -n "$out/memory-$precision-b$batch.txt" | tail -1)
    if [ "$status" = 0 ]; then
        ips=$(sed -n 's/.*"train_images_per_second": \([0-9.]*\).*/\1/p' "$out/bench-$precision-b$batch.json")
        warm=$(sed -n 's/.*"warmup_seconds": \([0-9.]*\).*/\1/p' "$out/bench-$precision-b$batch.json")
        note "B4 380x380 $precision batch $batch: ${ips} img/s training (warm-up step ${warm} s), peak device memory $(( ${peak:-0} - ${base:-0} )) MiB above the ${base:-?} MiB in use before"
    else
        note "B4 380x380 $precision batch $batch FAILED (exit $status): $(tail -3 "$out/bench-$precision-b$batch.err" | tr '\n' ' ')"
        failed=1
    fi
done

# 3. The quick-start on cuda, then on the CPU, fresh caches.
f1() { sed -n 's/.*"macro_f1": \([0-9.]*\).*/\1/p' "$1" | head -1; }
for backend in cuda cpu; do
    export MASKFLOW_CACHE="$out/quickstart-$backend/cache" MASKFLOW_SAVED="$out/quickstart-$backend/saved"
    started=$(date +%s)
    if timeout "$([ "$backend" = cuda ] && echo 100 || echo 80)" "$bin" run pipelines/quickstart.mf --set "train.backend=$backend" > "$out/quickstart-$backend.txt" 2> "$out/quickstart-$backend.err"; then
        note "quick-start on $backend: macro-F1 $(f1 "$MASKFLOW_SAVED/quickstart/latest/metrics.json") in $(( $(date +%s) - started )) s"
    else
        note "quick-start on $backend FAILED: $(tail -3 "$out/quickstart-$backend.err" | tr '\n' ' ')"
        failed=1
    fi
done
unset MASKFLOW_CACHE MASKFLOW_SAVED
note "results: $out"
exit "$failed"
