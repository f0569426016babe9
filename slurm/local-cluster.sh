#!/bin/bash
# A real single-node Slurm for laptops and CI, with Deucalion's partition names.
#
#   bash slurm/local-cluster.sh start    # install (Debian packages) if missing, start munge + slurmctld + slurmd
#   bash slurm/local-cluster.sh status   # node state and the SLURM_CONF line to export
#   bash slurm/local-cluster.sh stop     # stop only the daemons this script started (by pid)
#
# The node declares itself as a Deucalion A100 node (128 CPUs, 4 fake GPUs) whatever the
# machine has (SlurmdParameters=config_overrides), so the run-*.sh files with their literal
# `#SBATCH --cpus-per-task=32 --gpus=1 -p normal-a100-40` lines run unchanged. Any account
# is accepted (no accounting database). State, logs and config live in $HEALTHAI_SLURM_DIR
# (default /tmp/healthai-slurm), outside the repo. Measured facts: shared/notes/slurm-local.md.
set -euo pipefail

STATE="${HEALTHAI_SLURM_DIR:-/tmp/healthai-slurm}"
CONF="$STATE/slurm.conf"
DEFAULT_CONF=/etc/slurm/slurm.conf
MARK="# written by healthai slurm/local-cluster.sh"

log() { echo "[local-cluster] $*"; }
die() { echo "[local-cluster] error: $*" >&2; exit 1; }

install_packages() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
    && command -v munged >/dev/null && return 0
  [ "$(id -u)" = 0 ] || die "Slurm is not installed; as root run: apt-get install slurmctld slurmd slurm-client munge"
  command -v apt-get >/dev/null || die "Slurm is not installed and this is not a Debian/Ubuntu machine (no apt-get)"
  log "installing Debian packages: slurmctld slurmd slurm-client munge"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

write_config() {
  mkdir -p "$STATE"/{ctld,d,log,run,munge}
  chmod 700 "$STATE/munge"
  local mem; mem=$(free -m | awk '/^Mem:/ {print $2 - 1024}')
  [ "$mem" -gt 1024 ] || mem=1024
  # Fake GPU devices: character devices with /dev/null's numbers, one per "A100".
  for i in 0 1 2 3; do [ -e "$STATE/fake-gpu$i" ] || mknod "$STATE/fake-gpu$i" c 1 3; done
  cat > "$CONF" <<EOF
$MARK
ClusterName=healthai-local
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$STATE/munge/munge.socket.2,cred_expire=10
CryptoType=crypto/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_interval=5,bf_interval=2
DependencyParameters=kill_invalid_depend
MailProg=/bin/true
MinJobAge=600
ReturnToService=2
KillWait=10
GresTypes=gpu
MpiDefault=none
NodeName=localhost NodeAddr=127.0.0.1 CPUs=128 RealMemory=$mem Gres=gpu:4 State=UNKNOWN
PartitionName=normal-x86 Nodes=localhost Default=YES MaxTime=48:00:00 State=UP
PartitionName=dev-x86 Nodes=localhost MaxTime=04:00:00 State=UP
PartitionName=normal-arm Nodes=localhost MaxTime=48:00:00 State=UP
PartitionName=normal-a100-40 Nodes=localhost MaxTime=48:00:00 State=UP
PartitionName=normal-a100-80 Nodes=localhost MaxTime=48:00:00 State=UP
PartitionName=dev-a100-40 Nodes=localhost MaxTime=04:00:00 State=UP
PartitionName=dev-a100-80 Nodes=localhost MaxTime=04:00:00 State=UP
EOF
  {
    echo "$MARK"
    echo "AutoDetect=off"
    for i in 0 1 2 3; do echo "NodeName=localhost Name=gpu File=$STATE/fake-gpu$i"; done
  } > "$STATE/gres.conf"
  # Plain `sbatch` must work without SLURM_CONF: use the default path unless someone else owns it.
  if [ "$(id -u)" = 0 ]; then
    mkdir -p /etc/slurm
    if [ ! -e "$DEFAULT_CONF" ] || grep -qF "$MARK" "$DEFAULT_CONF"; then
      cp "$CONF" "$DEFAULT_CONF"; cp "$STATE/gres.conf" /etc/slurm/gres.conf
    fi
  fi
}

start_munge() {
  if pid_alive "$STATE/run/munged.pid"; then return 0; fi
  local key="$STATE/munge/munge.key"
  if id munge >/dev/null 2>&1; then chown munge:munge "$STATE/munge"; fi
  if [ ! -f "$key" ]; then
    if id munge >/dev/null 2>&1; then
      if command -v mungekey >/dev/null; then
        runuser -u munge -- mungekey --create --keyfile="$key" >/dev/null
      else
        dd if=/dev/urandom bs=1 count=1024 of="$key" 2>/dev/null; chown munge:munge "$key"
      fi
    else
      dd if=/dev/urandom bs=1 count=1024 of="$key" 2>/dev/null
    fi
    chmod 400 "$key"
  fi
  local args=(--key-file="$key" --socket="$STATE/munge/munge.socket.2" --pid-file="$STATE/run/munged.pid"
              --log-file="$STATE/log/munged.log" --seed-file="$STATE/munge/munge.seed" --force)
  chmod 1777 "$STATE/run" "$STATE/log"   # munged runs as the munge user and writes its pid/log here
  if id munge >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    runuser -u munge -- munged "${args[@]}"
  else
    munged "${args[@]}"
  fi
  for _ in $(seq 50); do
    munge -n --socket="$STATE/munge/munge.socket.2" | unmunge --socket="$STATE/munge/munge.socket.2" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  die "munged did not come up; see $STATE/log/munged.log"
}

node_state() { SLURM_CONF="$CONF" sinfo -h -n localhost -o %T 2>/dev/null | head -n1 || true; }

start() {
  install_packages
  if pid_alive "$STATE/run/slurmctld.pid" && pid_alive "$STATE/run/slurmd.pid"; then
    log "already running (node $(node_state))"
    print_env
    return 0
  fi
  stop_daemons quiet
  write_config
  start_munge
  slurmctld -f "$CONF" -i
  slurmd -f "$CONF" -N localhost
  local deadline=$((SECONDS + 30)) state=""
  while [ $SECONDS -lt $deadline ]; do
    pid_alive "$STATE/run/slurmctld.pid" || { sleep 0.2; pid_alive "$STATE/run/slurmctld.pid" || break; }
    state=$(node_state)
    case "$state" in idle*|mixed*|allocated*) break ;; esac
    sleep 0.2
  done
  case "$state" in
    idle*|mixed*|allocated*) ;;
    *) echo "--- slurmctld.log"; tail -n 20 "$STATE/log/slurmctld.log" 2>/dev/null || true
       echo "--- slurmd.log"; tail -n 20 "$STATE/log/slurmd.log" 2>/dev/null || true
       die "the node did not become idle within 30 s (state '${state:-none}')" ;;
  esac
  log "running: node localhost is $state; partitions $(SLURM_CONF="$CONF" sinfo -h -o %P | tr '\n' ' ')"
  print_env
}

stop_daemons() {
  local quiet="${1:-}" pids=()
  for name in slurmd slurmctld; do
    if pid_alive "$STATE/run/$name.pid"; then pids+=("$(cat "$STATE/run/$name.pid")"); fi
  done
  # Stop both Slurm daemons together (slurmd can ignore TERM for >10 s once slurmctld is gone).
  if [ ${#pids[@]} -gt 0 ]; then
    kill "${pids[@]}" 2>/dev/null || true
    for _ in $(seq 100); do
      local alive=0
      for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
      [ $alive = 0 ] && break
      sleep 0.1
    done
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  fi
  if pid_alive "$STATE/run/munged.pid"; then
    kill "$(cat "$STATE/run/munged.pid")" 2>/dev/null || true
  fi
  rm -f "$STATE/run/"*.pid
  [ -n "$quiet" ] || log "stopped"
}

print_env() {
  if [ "$(id -u)" = 0 ] && grep -qF "$MARK" "$DEFAULT_CONF" 2>/dev/null; then
    log "config at $DEFAULT_CONF (plain sbatch/salloc/squeue work); or: export SLURM_CONF=$CONF"
  else
    echo "export SLURM_CONF=$CONF"
  fi
}

status() {
  if pid_alive "$STATE/run/slurmctld.pid" && pid_alive "$STATE/run/slurmd.pid"; then
    log "running: node localhost is $(node_state)"
    print_env
    SLURM_CONF="$CONF" squeue -o "%.10i %.16P %.24j %.8T %.10M %R" || true
  else
    log "not running"
    return 3
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop_daemons ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
