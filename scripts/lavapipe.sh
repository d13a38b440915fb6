#!/usr/bin/env bash
# lavapipe, Mesa's Vulkan driver on the CPU, for the wgpu backend's tests (tests/wgpu, issue 17).
#
#   scripts/lavapipe.sh install    # apt-get install libvulkan1 mesa-vulkan-drivers (when missing)
#
# A library loaded by the Vulkan loader, not a server: nothing to start or stop. The tests
# then run in `cargo test --release` with the rest, under the pinned cubecl autotune cache that
# `.ci/run` seeds (scripts/autotune.py: why, and how to regenerate it).
set -euo pipefail

case "${1:-}" in
install)
    if [ -e /usr/share/vulkan/icd.d/lvp_icd.x86_64.json ] && ldconfig -p | grep -q 'libvulkan.so.1 '; then
        exit 0
    fi
    echo "installing libvulkan1 and mesa-vulkan-drivers for tests/wgpu"
    as_root=""
    [ "$(id -u)" = 0 ] || as_root="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $as_root apt-get install -y -qq libvulkan1 mesa-vulkan-drivers >/dev/null ||
        { $as_root apt-get update -qq && $as_root apt-get install -y -qq libvulkan1 mesa-vulkan-drivers >/dev/null; }
    ;;
*)
    echo "usage: scripts/lavapipe.sh install" >&2
    exit 2
    ;;
esac
