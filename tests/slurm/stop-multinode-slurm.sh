#!/usr/bin/env bash
# Stop what start-multinode-slurm.sh started and remove its namespaces, veths and bridge. Safe to run any time,
# also after a crash: daemons are stopped by their PID files (only when the PID still runs that daemon), every
# process left in a node's network namespace (job steps, trainers) is killed by PID, then the namespaces, the
# veths and the bridge are deleted. Exit status 0 when nothing of the cluster is left.
B=${SLURM_MN_BASE:-${TMPDIR:-/tmp}/cpt-mn-slurm}
PREFIX=${SLURM_MN_PREFIX:-cptmn}

ours() {  # ours PIDFILE EXPECTED-COMMAND: the PID in the file when it still runs that command
  local pid
  [ -s "$1" ] || return 0
  pid=$(cat "$1")
  [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q "$2" && echo "$pid"
  return 0
}
stop() {  # stop PID...: SIGTERM, up to 3 s to exit, then SIGKILL
  [ $# -gt 0 ] || return 0
  kill "$@" 2>/dev/null
  for _ in $(seq 30); do
    alive=0; for pid in "$@"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break; sleep 0.1
  done
  kill -9 "$@" 2>/dev/null
  echo "stopped $*"
}

pids=""
for f in "$B"/run/slurmd-*.pid "$B/run/slurmctld.pid"; do [ -e "$f" ] && pids="$pids $(ours "$f" slurm)"; done
# shellcheck disable=SC2086
stop $pids
rm -f "$B"/run/*.pid
for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^${PREFIX}-node"); do
  for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
  ip netns delete "$ns" 2>/dev/null && echo "removed namespace $ns"
done
for link in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep "^${PREFIX}v[0-9]"); do
  ip link delete "$link" 2>/dev/null
done
ip link show "${PREFIX}br" >/dev/null 2>&1 && ip link delete "${PREFIX}br" && echo "removed bridge ${PREFIX}br"
stop $(ours "$B/munge/munged.pid" munged)
rm -f "$B/munge/munged.pid"
left="$(ip netns list 2>/dev/null | grep "^${PREFIX}-node")$(ip -o link show 2>/dev/null | grep ": ${PREFIX}")"
[ -z "$left" ] || { echo "stop-multinode-slurm: leftovers: $left" >&2; exit 1; }
exit 0
