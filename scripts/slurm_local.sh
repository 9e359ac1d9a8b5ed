#!/usr/bin/env bash
# A real single-node Slurm cluster on localhost, for the cluster tests and CI (root, no systemd needed).
#
#   scripts/slurm_local.sh start    write $MER_SLURM_DIR/slurm.conf, start munged, slurmctld and slurmd in the
#                                   background, record their PIDs, wait until the node is idle
#   scripts/slurm_local.sh stop     stop exactly those daemons, by their recorded PIDs
#   scripts/slurm_local.sh status   print the PIDs and `sinfo`
#   scripts/slurm_local.sh env      print `export SLURM_CONF=...` (eval it to use sbatch/squeue/sinfo)
#
# Needs the Debian packages slurmctld slurmd slurm-client munge (apt-get install -y ...). Everything the
# cluster writes (config, state, spool, logs, munge socket) stays under $MER_SLURM_DIR (default
# /tmp/mer-slurm); /etc is only read (the munge key). Slurm's client commands find the cluster through
# SLURM_CONF, so the cluster does not clash with a system-wide Slurm.
set -euo pipefail

DIR=${MER_SLURM_DIR:-/tmp/mer-slurm}
CONF=$DIR/slurm.conf
PIDS=$DIR/pids
PARTITION=${MER_SLURM_PARTITION:-debug}
CTLD_PORT=${MER_SLURM_CTLD_PORT:-16817}
SLURMD_PORT=${MER_SLURM_SLURMD_PORT:-16818}

log() { echo "slurm_local: $*" >&2; }

write_conf() {
    # The node's real CPUs and memory (slurmd refuses a node line that promises more than it has).
    local hw cpus sockets cores threads mem
    hw=$(slurmd -C | head -1)
    cpus=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$hw")
    sockets=$(sed -n 's/.*SocketsPerBoard=\([0-9]*\).*/\1/p' <<<"$hw")
    cores=$(sed -n 's/.*CoresPerSocket=\([0-9]*\).*/\1/p' <<<"$hw")
    threads=$(sed -n 's/.*ThreadsPerCore=\([0-9]*\).*/\1/p' <<<"$hw")
    mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$hw")
    mem=$((mem * 9 / 10))  # leave room: slurmd drains a node whose free memory is below its RealMemory
    cat >"$CONF" <<EOF
# Written by scripts/slurm_local.sh: a single-node test cluster on localhost.
ClusterName=merlocal
SlurmctldHost=localhost
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket.2
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
# Jobs can be requeued (submitit's requeue on time-out, scontrol requeue in the tests).
JobRequeue=1
# Seconds between SIGTERM and SIGKILL when a job is cancelled, preempted or requeued: time to checkpoint.
KillWait=60
# Finished jobs stay visible to squeue/scontrol this long (submitit and the launcher poll them).
MinJobAge=600
SlurmdTimeout=300
InactiveLimit=0
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus Boards=1 SocketsPerBoard=$sockets CoresPerSocket=$cores ThreadsPerCore=$threads RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
}

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

all_alive() {  # every daemon recorded in $PIDS still runs
    local _name pid
    [ -s "$PIDS" ] || return 1
    while read -r _name pid; do alive "$pid" || return 1; done <"$PIDS"
}

start() {
    for bin in munged slurmctld slurmd sinfo; do
        command -v "$bin" >/dev/null || { log "$bin not found: apt-get install -y slurmctld slurmd slurm-client munge"; exit 1; }
    done
    if all_alive; then
        log "already running ($DIR)"; return 0
    fi
    [ -f "$PIDS" ] && stop  # a partly dead cluster: stop what is left, start afresh
    mkdir -p "$DIR"/{state,spool,log,run,munge}
    chmod 755 "$DIR"
    chown munge:munge "$DIR/munge" && chmod 755 "$DIR/munge"  # munged wants the socket directory searchable by all
    local key=/etc/munge/munge.key
    if [ ! -s "$key" ]; then  # the munge package normally creates it; make one if it did not
        key=$DIR/munge/munge.key
        dd if=/dev/urandom of="$key" bs=1 count=1024 status=none
        chown munge:munge "$key"; chmod 400 "$key"
    fi
    write_conf
    : >"$PIDS"

    # munged refuses to run as root: run it as the munge user, socket in our own directory.
    runuser -u munge -- munged --foreground --socket="$DIR/munge/munge.socket.2" --key-file="$key" \
        --log-file="$DIR/munge/munged.log" --pid-file="$DIR/munge/munged.pid" --seed-file="$DIR/munge/munged.seed" \
        >>"$DIR/log/munged.out" 2>&1 &
    echo "munged $!" >>"$PIDS"
    for _ in $(seq 50); do [ -S "$DIR/munge/munge.socket.2" ] && break; sleep 0.1; done
    [ -S "$DIR/munge/munge.socket.2" ] || { log "munged did not start: $(tail -5 "$DIR/munge/munged.log" 2>/dev/null)"; stop; exit 1; }

    export SLURM_CONF=$CONF
    slurmctld -D -i -f "$CONF" >>"$DIR/log/slurmctld.out" 2>&1 &
    echo "slurmctld $!" >>"$PIDS"
    slurmd -D -N localhost -f "$CONF" >>"$DIR/log/slurmd.out" 2>&1 &
    echo "slurmd $!" >>"$PIDS"

    local state=""
    for _ in $(seq 120); do
        state=$(sinfo -h -n localhost -o %T 2>/dev/null || true)
        case "$state" in idle*|mix*|alloc*) break ;; esac
        sleep 0.5
    done
    case "$state" in
        idle*|mix*|alloc*) log "up: node localhost $state, partition $PARTITION, SLURM_CONF=$CONF" ;;
        *) log "the node did not come up (state '${state:-none}'); logs in $DIR/log:"
           tail -20 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 || true
           stop; exit 1 ;;
    esac
}

stop() {
    [ -f "$PIDS" ] || { log "not running (no $PIDS)"; return 0; }
    # slurmd and slurmctld first (they talk to munged), each by its own PID; SIGKILL after 10 s.
    local order=(slurmd slurmctld munged) name pid
    for name in "${order[@]}"; do
        pid=$(awk -v n="$name" '$1 == n {print $2}' "$PIDS")
        alive "$pid" || continue
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 100); do alive "$pid" || break; sleep 0.1; done
        alive "$pid" && kill -KILL "$pid" 2>/dev/null || true
    done
    rm -f "$PIDS"
    log "stopped"
}

status() {
    [ -f "$PIDS" ] && cat "$PIDS" || log "not running"
    SLURM_CONF=$CONF sinfo 2>/dev/null || true
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    *) echo "usage: $0 start|stop|status|env   (state in \$MER_SLURM_DIR, default /tmp/mer-slurm)" >&2; exit 2 ;;
esac
