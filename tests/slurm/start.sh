#!/usr/bin/env bash
# Install (Debian packages slurm-wlm and munge) and start a private single-node SLURM for the SLURM
# workflow test (tests/slurm/test_slurm.py); tests/slurm/stop.sh stops it.
#
#   sudo tests/slurm/start.sh && sinfo && sudo tests/slurm/stop.sh
#
# Everything lives in $QUANTSCAN_SLURM_DIR (default /tmp/quantscan-slurm): slurm.conf, its own munge
# key and socket, state, logs, and jobcomp.txt (every finished job with its CPUs and memory: the
# cluster has no slurmdbd, so the workflow's status command is squeue). The one file outside is the
# link /etc/slurm/slurm.conf -> $DIR/slurm.conf (stop.sh removes it): srun inside a job reads only the
# default path, as the jobstep plugin drops SLURM_CONF from its environment, so a machine that already
# has a /etc/slurm/slurm.conf of its own is left alone and the test is skipped. The daemons listen on
# their own ports. The node gets CPUs=$(nproc) and RealMemory = MemTotal minus 10 % (at least 1 GB):
# jobs asking for more stay pending (reason PartitionConfig) like on a real cluster.
#
# Exit status: 0 started (prints SLURM_CONF=...), 77 skipped (not root, the packages cannot be
# installed, or another SLURM is configured here: the reason is printed), anything else: the cluster
# failed to start.
set -euo pipefail

DIR="${QUANTSCAN_SLURM_DIR:-/tmp/quantscan-slurm}"
CTLD_PORT="${QUANTSCAN_SLURM_PORT:-16817}"
SLURMD_PORT=$((CTLD_PORT + 1))
skip() { echo "SKIP: $*" >&2; exit 77; }

[[ "$(id -u)" == 0 ]] || skip "tests/slurm/start.sh needs root (it installs Debian packages and runs slurmctld, slurmd and munged as root); running as $(id -un)"

# -- packages ----------------------------------------------------------------------------------
need=()
for bin in /usr/sbin/slurmctld /usr/sbin/slurmd /usr/bin/sbatch /usr/sbin/munged; do
  [[ -x "$bin" ]] || need+=("$bin")
done
if ((${#need[@]})); then
  command -v apt-get >/dev/null || skip "missing ${need[*]} and no apt-get to install slurm-wlm and munge (not Debian/Ubuntu)"
  export DEBIAN_FRONTEND=noninteractive
  pkgs=(slurm-wlm munge)
  echo "installing ${pkgs[*]} (apt-get) ..." >&2
  if ! apt-get install -y -q --no-install-recommends "${pkgs[@]}" >"${TMPDIR:-/tmp}/quantscan-slurm-apt.log" 2>&1; then
    apt-get update -q >>"${TMPDIR:-/tmp}/quantscan-slurm-apt.log" 2>&1 || true
    apt-get install -y -q --no-install-recommends "${pkgs[@]}" >>"${TMPDIR:-/tmp}/quantscan-slurm-apt.log" 2>&1 ||
      skip "apt-get install ${pkgs[*]} failed (see ${TMPDIR:-/tmp}/quantscan-slurm-apt.log): $(tail -n 1 "${TMPDIR:-/tmp}/quantscan-slurm-apt.log")"
  fi
fi

# -- a fresh private cluster -------------------------------------------------------------------
ETC_CONF=/etc/slurm/slurm.conf
if [[ -e "$ETC_CONF" || -L "$ETC_CONF" ]] && [[ "$(readlink "$ETC_CONF")" != "$DIR/slurm.conf" ]]; then
  skip "$ETC_CONF exists: this machine has a SLURM configuration of its own, which the test cluster would shadow"
fi
bash "$(dirname "$0")/stop.sh" >/dev/null 2>&1 || true
rm -rf "$DIR"
mkdir -p "$DIR"/{munge,state,spool,log}
chmod 700 "$DIR/munge"

HOST="$(hostname -s)"
CPUS="$(nproc)"
MEM_MB=$(($(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024))
MARGIN=$((MEM_MB / 10 > 1024 ? MEM_MB / 10 : 1024))
REAL_MB=$((MEM_MB - MARGIN))
SOCKET="$DIR/munge/munge.socket"

cat >"$DIR/slurm.conf" <<CONF
# Written by tests/slurm/start.sh: one node, no accounting database, no cgroups (works in containers).
ClusterName=quantscan
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCKET
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/log/jobcomp.txt
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=1000
MinJobAge=600
ReturnToService=2
SlurmdParameters=config_overrides
SlurmdTimeout=60
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$REAL_MB State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$DIR/slurm.conf"
mkdir -p /etc/slurm
ln -sfn "$SLURM_CONF" "$ETC_CONF"

# munged: its own key and socket (the key never leaves $DIR)
dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$DIR/munge/munge.key"
/usr/sbin/munged --force --socket="$SOCKET" --key-file="$DIR/munge/munge.key" \
  --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/log/munged.log" \
  --seed-file="$DIR/munge/munged.seed"
/usr/sbin/slurmctld -f "$SLURM_CONF" -c
/usr/sbin/slurmd -f "$SLURM_CONF" -N "$HOST"

fail() {
  echo "ERROR: $*" >&2
  tail -n 20 "$DIR"/log/*.log >&2 || true
  exit 1
}
for _ in $(seq 60); do
  state="$(sinfo -h -n "$HOST" -o %T 2>/dev/null || true)"
  [[ "$state" == idle* ]] && break
  if [[ "$state" == drain* || "$state" == down* ]]; then
    scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true
  fi
  sleep 1
done
[[ "$state" == idle* ]] || fail "node $HOST did not become idle (state: '${state:-no answer}')"
echo "SLURM up: node $HOST, $CPUS CPUs, $REAL_MB MB, partition debug (logs in $DIR/log)" >&2
echo "SLURM_CONF=$SLURM_CONF"
