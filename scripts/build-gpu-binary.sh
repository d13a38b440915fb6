#!/usr/bin/env bash
# Builds the maskflow binary that travels to a GPU machine with an NVIDIA driver but no Rust
# toolchain and no network: release, `--no-default-features --features cuda` (CPU and CUDA;
# wgpu stays out, it would add about 10 MiB), stripped, portable x86-64 (no
# target-cpu=native; the CPU kernels pick AVX2 at run time). Files that travel with the
# repository are at most 64 MiB, so the binary must stay within 60 MiB; this script fails
# otherwise.
#
# What the binary needs on that machine (cudarc 0.19 loads both with dlopen; nothing CUDA is
# linked):
#   - libcuda.so.1, the driver API: comes with the NVIDIA driver;
#   - libnvrtc.so.12 or .13 (and its libnvrtc-builtins), NVRTC: cubecl-cuda compiles its
#     kernels from CUDA C++ at run time. It is part of the CUDA toolkit, not of the driver; on
#     a machine without the toolkit, put it on LD_LIBRARY_PATH (the PyPI wheel
#     nvidia-cuda-nvrtc-cu12 holds it, about 60 MiB unpacked, so it cannot travel in the same
#     64 MiB as the binary).
# The script prints what the binary links (ldd) and the library names it may dlopen.
#
# Usage: scripts/build-gpu-binary.sh [OUT]      (default: target/maskflow-cuda, ignored by git:
# hand it to the GPU machine as a carried file, not a commit)
# The cuda build shares target/ with the CPU build (no crate of one overwrites the other's),
# but target/release/maskflow is the cuda binary afterwards; `cargo build --release` brings
# the CPU one back in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/maskflow-cuda}
limit=$((60 * 1024 * 1024))

started=$(date +%s)
cargo build --release --no-default-features --features cuda --bin maskflow
echo "build: $(( $(date +%s) - started )) s"
mkdir -p "$(dirname "$out")"
strip --strip-all -o "$out" target/release/maskflow
size=$(stat -c %s "$out")
echo "$out: $size bytes ($(awk -v s="$size" 'BEGIN { printf "%.1f", s / 1048576 }') MiB; unstripped $(stat -c %s target/release/maskflow) bytes)"
echo "linked (ldd):"
ldd "$out" | sed 's/^/  /'
# cudarc builds the candidate names at run time (lib{name}.so, lib{name}.so.13, .12, …, .1),
# so they are not strings in the binary; without a driver, the probe's error lists them all.
echo "opened at run time (dlopen) when train.backend = cuda: libcuda.so.1 (driver), libnvrtc.so.13/.12 (NVRTC)"
if [ "$size" -gt "$limit" ]; then
    echo "error: $out is $size bytes, over the 60 MiB that can travel with the repository" >&2
    exit 1
fi
