#!/usr/bin/env bash
# The wgpu backend's tests (tests/wgpu, issue 17) on lavapipe, Mesa's Vulkan driver on the CPU:
# installs Debian's Vulkan loader and Mesa's drivers when missing, then builds and runs
# `cargo test --release --features wgpu --test wgpu`.
#
# Cost measured in a fresh clone on 2 cores, after `cargo test --release`: 13.5 min to build
# (burn's wgpu feature changes burn-backend's features, so the burn stack compiles a second
# time, and maskflow-ml instantiates the models for flex and wgpu: 7.5 min of it), 12.4 min of
# tests. The build replaces target/release/maskflow with a wgpu build; `cargo build --release`
# brings the CPU one back in seconds. `minimal` autotuning bounds the cold cost of the first
# kernels; cubecl keeps its results under target/.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -e /usr/share/vulkan/icd.d/lvp_icd.x86_64.json ] || ! ldconfig -p | grep -q 'libvulkan.so.1 '; then
    echo "installing libvulkan1 and mesa-vulkan-drivers for tests/wgpu"
    as_root=""
    [ "$(id -u)" = 0 ] || as_root="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $as_root apt-get install -y -qq libvulkan1 mesa-vulkan-drivers >/dev/null ||
        { $as_root apt-get update -qq && $as_root apt-get install -y -qq libvulkan1 mesa-vulkan-drivers >/dev/null; }
fi
started=$(date +%s)
CUBECL_AUTOTUNE_LEVEL=minimal cargo test --release --features wgpu --test wgpu "$@"
echo "cargo test --release --features wgpu --test wgpu: $(( $(date +%s) - started ))s"
