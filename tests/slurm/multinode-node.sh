#!/usr/bin/env bash
# One node of the N-node test cluster (start-multinode-slurm.sh): start its slurmd, or lose it.
#
#   SLURM_MN_BASE=/some/dir bash tests/slurm/multinode-node.sh start node2   # slurmd in node2's namespaces
#   SLURM_MN_BASE=/some/dir bash tests/slurm/multinode-node.sh kill node2    # SIGKILL everything of node2
#
# `kill` is a node failure: every process in the node's network namespace (slurmd, slurmstepd, the job's
# torchrun and trainer ranks) is SIGKILLed by PID; slurmctld notices after SlurmdTimeout and sets it DOWN.
# `start` brings it back (ReturnToService=2 makes it usable as soon as slurmd registers); start-multinode-slurm.sh
# uses it for every node. Needs root.
set -euo pipefail
B=${SLURM_MN_BASE:-${TMPDIR:-/tmp}/cpt-mn-slurm}
PREFIX=${SLURM_MN_PREFIX:-cptmn}
action=${1:?usage: multinode-node.sh start|kill node<i>}
node=${2:?usage: multinode-node.sh start|kill node<i>}
[[ $node =~ ^node[0-9]+$ ]] || { echo "multinode-node: bad node name $node" >&2; exit 3; }
ns=${PREFIX}-$node
case $action in
  start)
    mkdir -p "$B/spool/$node"
    nsenter --net="/run/netns/$ns" unshare --uts --mount --propagation slave sh -c "
      mount --bind '$B/hosts' /etc/hosts && mount --bind '$B/nsswitch.conf' /etc/nsswitch.conf &&
      mkdir -p /etc/slurm && mount --bind '$B/etc-slurm' /etc/slurm && hostname $node &&
      exec /usr/sbin/slurmd -f /etc/slurm/slurm.conf -N $node" ;;
  kill)
    pids=$(ip netns pids "$ns")
    [ -n "$pids" ] || { echo "multinode-node: nothing runs on $node" >&2; exit 1; }
    # shellcheck disable=SC2086
    kill -9 $pids
    rm -f "$B/run/slurmd-$node.pid"
    echo "killed $node: $(echo $pids | wc -w) processes" ;;
  *) echo "multinode-node: unknown action $action (start|kill)" >&2; exit 3 ;;
esac
