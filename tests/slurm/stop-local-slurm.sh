#!/usr/bin/env bash
# Stop the daemons that start-local-slurm.sh started (by their PID files only; munged only if it started it).
B=${SLURM_BASE:-${TMPDIR:-/tmp}/cpt-local-slurm}
files="$B/run/slurmd.pid $B/run/slurmctld.pid"
[ -e "$B/run/munged.ours" ] && files="$files /run/munge/munged.pid"
for f in $files; do
  [ -s "$f" ] || continue
  pid=$(cat "$f"); kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  echo "stopped $(basename "$f" .pid) ($pid)"
done
rm -f "$B/run/munged.ours"
if [ -L /etc/slurm/slurm.conf ] && [ "$(readlink /etc/slurm/slurm.conf)" = "$B/slurm.conf" ]; then rm -f /etc/slurm/slurm.conf; fi
