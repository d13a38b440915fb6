#!/usr/bin/env bash
# Tear down the cluster `scripts/slurm-up.sh start DIR` started: cancels its jobs, then stops
# slurmd, slurmctld and munged by the PIDs they wrote under DIR (SIGTERM, SIGKILL after 15 s).
# Exits 0 when nothing runs. See scripts/slurm.sh.
#
#   scripts/slurm-down.sh DIR
set -euo pipefail
[ -n "${1:-}" ] || { echo "usage: slurm-down.sh DIR" >&2; exit 2; }
exec "$(dirname "$0")/slurm.sh" stop "$1"
