#!/usr/bin/env bash
# Bring up the one-node test Slurm cluster; see scripts/slurm.sh for details and pitfalls.
#
#   scripts/slurm-up.sh install       # apt-get install slurm-wlm munge (when missing)
#   eval "$(scripts/slurm-up.sh start DIR)"   # last stdout line: export SLURM_CONF=DIR/slurm.conf
set -euo pipefail
case "${1:-}" in
install|start) exec "$(dirname "$0")/slurm.sh" "$@" ;;
*) echo "usage: slurm-up.sh install | start DIR" >&2; exit 2 ;;
esac
