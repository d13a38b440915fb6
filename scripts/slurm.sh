#!/usr/bin/env bash
# A real one-node Slurm cluster for tests and CI: Debian's slurm-wlm (22.05) and munge, with
# munged, slurmctld and slurmd started directly (no systemd) and everything under DIR.
#
#   scripts/slurm.sh install          # apt-get install slurm-wlm munge (when missing)
#   scripts/slurm.sh start DIR        # last stdout line: export SLURM_CONF=DIR/slurm.conf
#   scripts/slurm.sh stop DIR         # by the PIDs the daemons wrote under DIR; idempotent
#   (scripts/slurm-up.sh install|start DIR and scripts/slurm-down.sh DIR are thin wrappers.)
#
#   eval "$(scripts/slurm.sh start "$dir")"    # then sbatch, squeue, scontrol, scancel work
#
# `start` returns once the node is idle and slurmctld has made its first scheduling pass (~3 s
# after it starts), so a `sbatch --wrap true` runs within a second; otherwise it
# fails after SLURM_UP_TIMEOUT seconds (default 60), prints the tails of the daemons' logs,
# and stops what it started. Its only stdout is `export SLURM_CONF=DIR/slurm.conf` (DIR
# absolute; progress goes to stderr): the scripts export nothing, and the client commands
# find the cluster only through SLURM_CONF. Ports: SLURMCTLD_PORT (default 16817) and
# SLURMD_PORT (16818), read from the environment by `start` (Slurm itself ignores these
# names). Not root: the script re-runs itself under sudo; jobs run as the submitting user.
#
# DIR holds slurm.conf, state/ (StateSaveLocation), spool/ (SlurmdSpoolDir), the pid files,
# log/{slurmctld,slurmd}.log, log/jobcomp.txt, and munge/ (its own key, socket, pid, seed and
# log: munged takes --key-file/--socket/..., and slurm.conf's AuthInfo=socket=... points the
# daemons and clients at it), so neither /etc/munge/munge.key (which the munge package creates
# on install) nor /run/munge is used, and bring-ups in different DIRs never share a key or a
# socket. Outside DIR, `start` only adds a+x to DIR and its parents (munged runs as the munge
# user and must reach DIR/munge). Two clusters cannot run at once on the same ports.
#
# Facts measured on Debian 12 / Slurm 22.05 in a container (2 cores, 24 GiB, root, gVisor):
# - Timings: install 13 s (0.01 s when present), start 3.3 s, stop 0.4 s (running jobs
#   cancelled first).
# - munged runs as munge (runuser); it refuses a socket directory whose parents lack execute
#   permission for all (a `mktemp -d` folder is 700) and wants its own directories owned by
#   munge and not writable by others. slurmctld and slurmd run as root (SlurmUser=root).
# - No cgroups: ProctrackType=proctrack/linuxproc, TaskPlugin=task/none, no PrologFlags.
# - NodeName must be `hostname -s`; CPUs=nproc, RealMemory=95% of MemTotal, and
#   SlurmdParameters=config_overrides so a small mismatch never drains the node.
# - select/cons_tres + CR_Core_Memory + DefMemPerCPU=RealMemory/CPUs: without DefMemPerCPU
#   a job takes the whole node's memory and jobs run one at a time; with it, CPUs 1-CPU jobs
#   run at once (2 array tasks concurrently here).
# - No slurmdbd: AccountingStorageType=accounting_storage/none, so `sacct` prints nothing on
#   stdout, "Slurm accounting storage is disabled" on stderr, and exits 1. Finished jobs go
#   to log/jobcomp.txt (jobcomp/filetxt), one line each: JobId=<raw id> ... JobState=FAILED
#   ... ExitCode=1:0 (array tasks add ArrayJobId= ArrayTaskId=). `squeue` (default states)
#   drops a job once it ends; `squeue -t all` and `scontrol show job` keep it for MinJobAge,
#   set to 300 s here (Slurm's default is 300 too, kept explicit).
# - The scheduler ticks about once a second and, by default, delays batch jobs up to
#   batch_sched_delay=3 s, and rescans pending jobs only every sched_interval=60 s unless an
#   event (submit, job end, update) wakes it. Set here: batch_sched_delay=0 (a job starts
#   within ~1 s of sbatch) and sched_interval=1 (a job whose BeginTime passes starts within
#   ~1 s instead of up to a minute later). slurmctld's first pass comes ~3 s after it starts.
# - A requeued job (`scontrol requeue`, also on a COMPLETED/FAILED/CANCELLED batch job, or a
#   --requeue job after a node failure) goes COMPLETING, then PENDING with Reason=BeginTime
#   and BeginTime = requeue + cred_expire (AuthInfo=cred_expire, default 120 s, minimum 5):
#   it reran 124 s later with the defaults. This cluster sets AuthInfo=cred_expire=
#   SLURM_CRED_EXPIRE (default 10): it reruns ~11 s later. A client can skip the wait: once
#   squeue shows Reason BeginTime, `scontrol update JobId=X StartTime=now` (rerun ~1 s after
#   the requeue). Sent earlier, while the job is still COMPLETING, the update is accepted
#   (exit 0) but overwritten when the requeue completes. `scontrol release` does nothing:
#   the job is not held. The rerun has SLURM_RESTART_COUNT=N (unset on the first run) and
#   truncates its output file unless --open-mode=append.
# - `scancel --signal=USR2 --batch JOB` reaches the batch shell at once when the job runs;
#   on a pending job scancel retries for ~30 s (exits 0) or until the job starts.
# - `sbatch --wait` polls every 10 s; clients that need to react faster poll squeue themselves.
# - The daemons daemonize under PID 1, which reaps them late: a stopped daemon stays a zombie
#   for a second or so, which `stop` counts as gone.
set -euo pipefail

usage() {
    echo "usage: slurm.sh install | start DIR | stop DIR" >&2
    exit 2
}

cmd=${1:-}
case "$cmd" in
install|start|stop) ;;
*) usage ;;
esac

if [ "$cmd" = install ]; then
    command -v sbatch >/dev/null 2>&1 && command -v slurmctld >/dev/null 2>&1 &&
        command -v munged >/dev/null 2>&1 && exit 0
    as_root=""
    [ "$(id -u)" = 0 ] || as_root="sudo"
    export DEBIAN_FRONTEND=noninteractive
    # The packages' postinst scripts start nothing without systemd; they do create
    # /etc/munge/munge.key, which this script never uses.
    $as_root apt-get install -y -qq slurm-wlm munge >/dev/null ||
        { $as_root apt-get update -qq && $as_root apt-get install -y -qq slurm-wlm munge >/dev/null; }
    exit 0
fi

dir_arg=${2:-}
[ -n "$dir_arg" ] || usage
if [ "$(id -u)" != 0 ]; then
    exec sudo SLURMCTLD_PORT="${SLURMCTLD_PORT:-}" SLURMD_PORT="${SLURMD_PORT:-}" \
        SLURM_UP_TIMEOUT="${SLURM_UP_TIMEOUT:-}" SLURM_CRED_EXPIRE="${SLURM_CRED_EXPIRE:-}" \
        "$0" "$@"
fi
dir=$(realpath -m "$dir_arg")

# The daemons, in the order they are stopped: name (as in /proc/PID/comm) and pid file.
daemons="slurmd:$dir/slurmd.pid slurmctld:$dir/slurmctld.pid munged:$dir/munge/munged.pid"

# Whether PID runs NAME (a stale pid file may name a reused PID). A zombie counts as gone:
# the daemons' parent is PID 1, which may take a second or more to reap them.
running() {
    local pid=$1 name=$2 stat
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ] || return 1
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [ "${stat%% *}" != Z ]
}

# The PID in FILE when that process is alive and is NAME.
live_pid() {
    local name=$1 file=$2 pid
    [ -s "$file" ] || return 1
    pid=$(tr -dc 0-9 < "$file")
    [ -n "$pid" ] && running "$pid" "$name" || return 1
    echo "$pid"
}

stop_all() {
    local entry name file pid i
    # Cancel the jobs first: slurmstepd outlives slurmd, and its PIDs are in no file.
    if live_pid slurmctld "$dir/slurmctld.pid" >/dev/null && [ -s "$dir/slurm.conf" ]; then
        export SLURM_CONF="$dir/slurm.conf"
        if [ -n "$(timeout 10 squeue -h -o %i 2>/dev/null)" ]; then
            timeout 10 scancel --partition=debug 2>/dev/null || true
            for i in $(seq 100); do
                [ -z "$(timeout 10 squeue -h -t all -o '%i %T' 2>/dev/null |
                    grep -E ' (PENDING|RUNNING|CONFIGURING|COMPLETING|SUSPENDED|REQUEUED)')" ] && break
                sleep 0.2
            done
        fi
        unset SLURM_CONF
    fi
    for entry in $daemons; do
        name=${entry%%:*}
        file=${entry#*:}
        pid=$(live_pid "$name" "$file") || continue
        kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 150); do
            running "$pid" "$name" || break
            sleep 0.1
        done
        if running "$pid" "$name"; then
            echo "$name ($pid) ignored SIGTERM for 15 s; sending SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
            for i in $(seq 50); do
                running "$pid" "$name" || break
                sleep 0.1
            done
        fi
    done
}

if [ "$cmd" = stop ]; then
    stop_all
    exit 0
fi

# start
for c in munged mungekey slurmctld slurmd sinfo; do
    command -v "$c" >/dev/null 2>&1 ||
        { echo "$c is missing: run scripts/slurm.sh install" >&2; exit 1; }
done
for entry in $daemons; do
    if live_pid "${entry%%:*}" "${entry#*:}" >/dev/null; then
        echo "a cluster already runs in $dir: run scripts/slurm.sh stop $dir first" >&2
        exit 1
    fi
done
ctld_port=${SLURMCTLD_PORT:-16817}
slurmd_port=${SLURMD_PORT:-16818}
for port in "$ctld_port" "$slurmd_port"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "port $port is in use (another cluster? set SLURMCTLD_PORT / SLURMD_PORT)" >&2
        exit 1
    fi
done
cred_expire=${SLURM_CRED_EXPIRE:-10}
timeout_s=${SLURM_UP_TIMEOUT:-60}
node=$(hostname -s)
cpus=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
mem_mb=$(awk '/^MemTotal:/ { print int($2 / 1024) }' /proc/meminfo)
real_mem=$((mem_mb * 95 / 100))
mem_per_cpu=$((real_mem / cpus))

mkdir -p "$dir/state" "$dir/spool" "$dir/log" "$dir/munge"
rm -f "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munge/munged.pid" "$dir/munge/munge.socket"*
# munged (as munge) must reach DIR/munge; clients of any user must reach its socket.
d="$dir"
while [ "$d" != / ]; do chmod a+x "$d" 2>/dev/null || true; d=$(dirname "$d"); done
chown munge:munge "$dir/munge"
chmod 755 "$dir/munge"
if [ ! -s "$dir/munge/munge.key" ]; then
    mungekey --create --keyfile="$dir/munge/munge.key" 2>/dev/null ||
        dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
fi
chown munge:munge "$dir/munge/munge.key"
chmod 600 "$dir/munge/munge.key"

cat > "$dir/slurm.conf" <<CONF
# Written by scripts/slurm.sh start $dir
ClusterName=maskflow
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=$cred_expire
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/log/jobcomp.txt
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$mem_per_cpu
MinJobAge=300
ReturnToService=2
MpiDefault=none
SwitchType=switch/none
SlurmdParameters=config_overrides
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$real_mem State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
CONF
chmod 644 "$dir/slurm.conf"
export SLURM_CONF="$dir/slurm.conf"

fail() {
    echo "slurm.sh start: $1" >&2
    for log in "$dir/munge/munged.log" "$dir/log/slurmctld.log" "$dir/log/slurmd.log"; do
        [ -f "$log" ] || continue
        echo "--- tail $log" >&2
        tail -n 20 "$log" >&2
    done
    stop_all
    exit 1
}

# wait_for SECONDS COMMAND...: run COMMAND every 0.2 s until it succeeds.
wait_for() {
    local end=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$end" ] || return 1
        sleep 0.2
    done
}

echo "starting munged" >&2
runuser -u munge -- munged --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" \
    --seed-file="$dir/munge/munged.seed" || fail "munged did not start"
wait_for 10 sh -c "munge -n -S '$dir/munge/munge.socket' | unmunge -S '$dir/munge/munge.socket'" ||
    fail "munged does not answer on $dir/munge/munge.socket"

echo "starting slurmctld on port $ctld_port" >&2
# DIR may be reused: its logs grow across runs, so look only past this offset.
log_offset=$(($(stat -c %s "$dir/log/slurmctld.log" 2>/dev/null || echo 0) + 1))
slurmctld -f "$dir/slurm.conf" || fail "slurmctld did not start"
wait_for "$timeout_s" scontrol ping || fail "slurmctld does not answer on port $ctld_port"

echo "starting slurmd on port $slurmd_port" >&2
slurmd -f "$dir/slurm.conf" || fail "slurmd did not start"
node_idle() { [ "$(sinfo -h -n "$node" -o %T 2>/dev/null)" = idle ]; }
wait_for "$timeout_s" node_idle ||
    fail "node $node is not idle after ${timeout_s}s: $(sinfo -h -N -o '%N %T %E' 2>&1)"
# slurmctld's first scheduling pass comes ~3 s after it starts (it then logs its
# SchedulerParameters); a job submitted before waits for it. Wait for it, but never fail on it.
first_pass() { tail -c "+$log_offset" "$dir/log/slurmctld.log" | grep -q 'SchedulerParameters='; }
wait_for 10 first_pass || true

echo "export SLURM_CONF=$dir/slurm.conf"
