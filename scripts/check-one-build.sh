#!/usr/bin/env bash
# Fails when the README's two commands would build two copies of the dependency graph.
#
# 1. Static: every package in the graph of `cargo build` must have the same features in the
#    graph of `cargo test` (which adds the dev-dependencies). A package whose features differ
#    is rebuilt, and with it everything above it (burn included). Takes about two seconds.
# 2. Real: after `cargo test --release`, `cargo build --release` may compile the `maskflow`
#    binary target and nothing else. Run it after the tests; it costs nothing when it holds.
set -euo pipefail
cd "$(dirname "$0")/.."

graph() { # edge kinds
    cargo tree -e "$1" -f '{p} [{f}]' --prefix none --target all --workspace | sed 's/ (\*)$//' | sort -u
}
drift=$(comm -23 <(graph normal) <(graph normal,dev) | grep -v '^maskflow' || true)
if [ -n "$drift" ]; then
    echo "error: the dev-dependencies change the features of these packages, so \`cargo test\` and" >&2
    echo "\`cargo run\` would build them (and burn above them) twice; name the same features on a" >&2
    echo "normal dependency in Cargo.toml (as for fastrand, regex-syntax and rustix):" >&2
    echo "normal build:" >&2
    echo "$drift" | sed 's/^/  /' >&2
    echo "test build:" >&2
    for p in $(echo "$drift" | awk '{print $1}' | sort -u); do graph normal,dev | grep "^$p " | sed 's/^/  /' >&2; done
    exit 1
fi

compiled=$(cargo build --release --message-format=json |
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and not m.get("fresh"):
        kinds = ",".join(m["target"]["kind"])
        print(m["package_id"].split("#")[-1] if "#" in m["package_id"] else m["package_id"], kinds, m["target"]["name"])
')
unexpected=$(echo "$compiled" | grep -v '^$' | grep -v ' bin maskflow$' || true)
echo "cargo build --release after cargo test --release compiled: ${compiled:-nothing}"
if [ -n "$unexpected" ]; then
    echo "error: \`cargo build --release\` after \`cargo test --release\` compiled more than the binary:" >&2
    echo "$unexpected" | sed 's/^/  /' >&2
    exit 1
fi
echo "one build: ok"
