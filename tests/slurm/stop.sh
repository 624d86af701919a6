#!/usr/bin/env bash
# Stop the private SLURM of tests/slurm/start.sh: cancel its jobs, then end the daemons it started
# (by the PIDs in their pid files), and remove its /etc/slurm/slurm.conf link. The packages stay.
set -uo pipefail
DIR="${QUANTSCAN_SLURM_DIR:-/tmp/quantscan-slurm}"
[[ -f "$DIR/slurm.conf" ]] || exit 0
export SLURM_CONF="$DIR/slurm.conf"
if [[ -f "$DIR/slurmctld.pid" ]]; then
  timeout 20 scancel --user "$(id -un)" >/dev/null 2>&1
  for _ in $(seq 20); do
    [[ -z "$(timeout 10 squeue -h -t running,completing,pending 2>/dev/null)" ]] && break
    sleep 1
  done
fi
for pidfile in "$DIR/slurmd.pid" "$DIR/slurmctld.pid" "$DIR/munge/munged.pid"; do
  [[ -f "$pidfile" ]] || continue
  pid="$(cat "$pidfile")"
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 30); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
  fi
  rm -f "$pidfile"
done
# the link start.sh made, if it is still ours
if [[ -L /etc/slurm/slurm.conf && "$(readlink /etc/slurm/slurm.conf)" == "$DIR/slurm.conf" ]]; then
  rm -f /etc/slurm/slurm.conf
fi
echo "SLURM stopped ($DIR)" >&2
