#!/usr/bin/env bash
# Issue 3's loader figure, side by side: maskflow's loader bench and the PIL + torchvision peer
# on the same 384x512 JPEGs, back to back, so both see the same machine load. Prints both
# figure sets and the ratios that matter (on-the-fly std224 vs the 2-worker DataLoader).
#
# Usage: scripts/loader-compare.sh [PYTHON]   (PYTHON defaults to /tmp/mfvenv/bin/python, a
# scratch venv with torch, torchvision and pillow; see scripts/peer_loader.py).
# Environment: LOADER_BENCH_IMAGES (default 500).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${1:-/tmp/mfvenv/bin/python}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cargo bench --bench loader --no-run >/dev/null 2>&1
LOADER_BENCH_DIR="$dir/jpegs" cargo bench --bench loader 2>/dev/null | tee "$dir/ours.txt"
"$python" scripts/peer_loader.py "$dir/jpegs" | tee "$dir/peer.txt"
ours() { grep -F "$1" "$dir/ours.txt" | head -1 | sed -E 's/.*:[[:space:]]+([0-9]+) img\/s.*/\1/'; }
peer() { grep -F "$1" "$dir/peer.txt" | head -1 | awk '{print $(NF-1)}'; }
b=$(ours "(b) "); bs=$(ours "(b') "); cs=$(ours "(c') ")
d224=$(ours "shard 224x224, flip + jitter + norm"); d96=$(ours "shard 96x128,  flip + norm")
p224=$(peer "2 workers, batch 32, std224"); psmall=$(peer "2 workers, small")
echo
echo "ratios (same files, same minute):"
awk -v b="$b" -v p="$p224" 'BEGIN { printf "  std224 on the fly: maskflow %d img/s vs DataLoader(2) %d img/s = %.1fx\n", b, p, b / p }'
awk -v b="$bs" -v c="$cs" -v p="$psmall" 'BEGIN { printf "  small 96x128:      maskflow %d (full decode) / %d (1/4 DCT) img/s vs DataLoader(2) %d img/s = %.1fx / %.1fx\n", b, c, p, b / p, c / p }'
awk -v d="$d224" -v b="$b" -v p="$p224" 'BEGIN { printf "  shard 224x224 flip+jitter+norm: %d img/s = %.1fx on-the-fly maskflow, %.1fx peer\n", d, d / b, d / p }'
awk -v d="$d96" -v b="$bs" -v p="$psmall" 'BEGIN { printf "  shard 96x128 flip+norm:         %d img/s = %.1fx on-the-fly maskflow, %.1fx peer\n", d, d / b, d / p }'
