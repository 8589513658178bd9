#!/usr/bin/env bash
# A one-node SLURM cluster on this machine (loopback), for trying `secateur sweep --slurm --submit`
# and for the `slurm` ctest label. Debian 12 packages: slurm-wlm 22.05 + munge.
#
#   bash scripts/slurm-local.sh start    # install if missing, start munged, slurmctld, slurmd; wait for idle
#   eval "$(bash scripts/slurm-local.sh env)"   # SLURM_CONF for sbatch/squeue/sinfo in this shell
#   bash scripts/slurm-local.sh status   # daemons alive? sinfo
#   bash scripts/slurm-local.sh stop     # end exactly the daemons `start` started (pid files)
#
# Everything lives under $SLURM_LOCAL_DIR (default /tmp/secateur-slurm): munge key, socket and
# log, slurm.conf, state, spool, logs, and one pid file per daemon. Nothing in /etc is used, so
# the cluster does not clash with a system SLURM; clients find it through SLURM_CONF, and the
# munge socket through `AuthInfo=socket=...` in that slurm.conf.
#
# Why these settings: containers and CI machines often have no systemd and no writable cgroup
# tree, so the cluster uses no cgroup plugin at all: ProctrackType=proctrack/linuxproc (tracks a
# job's processes by parent pid), TaskPlugin=task/none, JobAcctGatherType=jobacct_gather/none.
# SlurmUser=root because this script runs as root (CI) and munged/slurmd then share one uid.
# Ports: $SLURM_LOCAL_PORT (slurmctld, default 6817) and $SLURM_LOCAL_SLURMD_PORT (slurmd,
# default the next one).
#
# Exit codes: 0 ok; 1 a daemon failed (its log is printed); 2 usage; 3 SLURM cannot be installed
# here (no packages, no root) — the ctest maps that to "skipped" with the message printed.
set -euo pipefail

DIR=${SLURM_LOCAL_DIR:-/tmp/secateur-slurm}
PORT=${SLURM_LOCAL_PORT:-6817}
SLURMD_PORT=${SLURM_LOCAL_SLURMD_PORT:-$((PORT + 1))}
WAIT_S=${SLURM_LOCAL_WAIT_S:-60}
HERE=$(cd "$(dirname "$0")" && pwd)
CONF=$DIR/slurm.conf
NODE=$(hostname -s)

say() { echo "slurm-local: $*" >&2; }

alive() {  # alive NAME: the daemon recorded in NAME.pid is running (and is still that daemon)
  local f=$DIR/$1.pid pid
  [[ -s $f ]] || return 1
  pid=$(cat "$f")
  [[ -r /proc/$pid/comm ]] && [[ $(cat "/proc/$pid/comm") == "$1"* ]]
}

# Right after `setsid NAME &` the child is still bash, then setsid, before it becomes NAME: wait
# (up to 10 s on a loaded machine) until it has exec'd, so that `alive` does not take a daemon
# that is starting for one that died. False when it died without ever becoming NAME.
started() {  # started NAME PID
  local comm
  for _ in $(seq 100); do
    comm=$(cat "/proc/$2/comm" 2>/dev/null) || return 1
    [[ $comm == "$1"* ]] && return 0
    sleep 0.1
  done
  return 1
}

install_if_missing() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null &&
     command -v sbatch >/dev/null; then
    return 0
  fi
  if [[ $EUID -ne 0 ]] && ! sudo -n true 2>/dev/null; then
    say "slurm-wlm/munge are not installed and this user cannot install them (not root, no sudo)"
    exit 3
  fi
  if ! bash "$HERE/install-deps.sh" --with-slurm >&2; then
    say "installing slurm-wlm and munge failed (scripts/install-deps.sh --with-slurm)"
    exit 3
  fi
}

# munge insists on private directories and a key readable by its user only.
start_munge() {
  mkdir -p "$DIR/munge"
  chmod 700 "$DIR/munge"
  if [[ ! -s $DIR/munge/munge.key ]]; then
    dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$DIR/munge/munge.key"
  fi
  alive munged && return 0
  # --force: munged refuses to run as root or with a socket under a world-writable (sticky)
  # parent without it; the socket directory itself is 0700, so no other user can reach it.
  setsid munged --foreground --force --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" \
    --pid-file="$DIR/munge/munged.pid.unused" --log-file="$DIR/munge/munged.log" \
    --seed-file="$DIR/munge/munged.seed" </dev/null >>"$DIR/munge/munged.out" 2>&1 &
  echo $! >"$DIR/munged.pid"
  started munged $! || true
  for _ in $(seq 100); do
    [[ -S $DIR/munge/munge.socket ]] && return 0
    alive munged || break
    sleep 0.1
  done
  say "munged did not start:"; tail -n 20 "$DIR/munge/munged.log" "$DIR/munge/munged.out" >&2 2>/dev/null || true
  exit 1
}

write_conf() {
  # The node line as slurmd sees this machine (sockets/cores/threads), memory from /proc/meminfo
  # in MiB (what slurmd measures too; a larger value would drain the node as "Low RealMemory").
  local topo cpus mem_mb
  topo=$(slurmd -C | head -n1 | grep -o 'CPUs=.* ThreadsPerCore=[0-9]*')
  cpus=$(grep -o 'CPUs=[0-9]*' <<<"$topo" | cut -d= -f2)
  mem_mb=$(( $(awk '/^MemTotal:/{print $2}' /proc/meminfo) / 1024 ))
  mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
  cat >"$CONF" <<EOF
# Written by scripts/slurm-local.sh: a one-node cluster on loopback.
ClusterName=secateur-local
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/slurmctld.daemon.pid
SlurmdPidFile=$DIR/slurmd.daemon.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups, no systemd, no accounting database.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Jobs without --mem get one core's share of memory, so array tasks can run side by side.
DefMemPerCPU=$(( mem_mb / cpus ))
ReturnToService=2
MailProg=/bin/true
SlurmdTimeout=60
InactiveLimit=0
KillWait=10
MinJobAge=300
NodeName=$NODE NodeAddr=127.0.0.1 $topo RealMemory=$mem_mb State=UNKNOWN
PartitionName=local Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

start_daemon() {  # start_daemon NAME ARGS...: foreground daemon in its own session, pid recorded
  local name=$1; shift
  alive "$name" && return 0
  SLURM_CONF=$CONF setsid "$name" -D -f "$CONF" "$@" </dev/null >>"$DIR/log/$name.out" 2>&1 &
  echo $! >"$DIR/$name.pid"
  started "$name" $! || true  # a daemon that died is reported by cmd_start's alive check
}

node_state() { SLURM_CONF=$CONF sinfo -h -N -n "$NODE" -o '%T' 2>/dev/null | head -n1; }

cmd_start() {
  install_if_missing
  mkdir -p "$DIR"
  chmod 755 "$DIR"
  start_munge
  write_conf
  start_daemon slurmctld -i   # -i: ignore state left by an earlier cluster in $DIR
  start_daemon slurmd -N "$NODE"
  local state="" i
  for ((i = 0; i < WAIT_S * 2; ++i)); do
    for d in slurmctld slurmd; do
      if ! alive $d; then
        say "$d exited while starting; its log ($DIR/log):"
        tail -n 30 "$DIR/log/$d.log" "$DIR/log/$d.out" >&2 2>/dev/null || true
        exit 1
      fi
    done
    state=$(node_state || true)
    if [[ $state == idle* || $state == mixed* || $state == allocated* ]]; then
      say "node $NODE is $state (SLURM_CONF=$CONF)"
      return 0
    fi
    sleep 0.5
  done
  say "node $NODE not idle after ${WAIT_S}s (state '${state:-unknown}'); logs in $DIR/log:"
  tail -n 30 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 2>/dev/null || true
  exit 1
}

cmd_stop() {
  local d pid
  for d in slurmd slurmctld munged; do
    [[ -s $DIR/$d.pid ]] || continue
    pid=$(cat "$DIR/$d.pid")
    if alive "$d"; then
      kill -TERM "$pid"
      for _ in $(seq 50); do alive "$d" || break; sleep 0.1; done
      alive "$d" && kill -KILL "$pid"
      say "stopped $d ($pid)"
    fi
    rm -f "$DIR/$d.pid"
  done
}

cmd_status() {
  local d rc=0
  for d in munged slurmctld slurmd; do
    if alive "$d"; then echo "$d: running (pid $(cat "$DIR/$d.pid"))"; else echo "$d: not running"; rc=1; fi
  done
  [[ -f $CONF ]] && SLURM_CONF=$CONF sinfo 2>&1 || true
  return $rc
}

case ${1:-} in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  *) echo "usage: $0 start|stop|status|env   (state under \$SLURM_LOCAL_DIR, default /tmp/secateur-slurm)" >&2; exit 2 ;;
esac
