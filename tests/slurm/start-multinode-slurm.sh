#!/usr/bin/env bash
# Start an N-node SLURM on this one machine, for the multi-node integration tests and CI.
#
#   SLURM_MN_BASE=/some/dir SLURM_MN_NODES=2 bash tests/slurm/start-multinode-slurm.sh
#
# Each node is a network namespace (a veth on a private bridge, one address of a private /24 that routes nowhere
# else: no default route, no forwarding), a UTS + mount namespace (its own hostname node<i>, its own /etc/hosts,
# /etc/slurm and an /etc/nsswitch.conf with `hosts: files` only) and its own slurmd. slurmctld runs on the host,
# bound to the bridge address under the host's short name; munged runs on its own socket with its own key, so any
# other munged and any other (e.g. single-node test) SLURM on this machine are left alone. The host's
# /etc/slurm/slurm.conf is never touched: host-side clients must be given SLURM_CONF=$SLURM_MN_BASE/slurm.conf
# (without it a Slurm client does a DNS SRV lookup); inside a node /etc/slurm/slurm.conf is this cluster's.
#
# The network namespace is entered with `nsenter --net=`, never `ip netns exec` (which remounts /sys: slurmd
# 22.05 then cannot initialise its cgroup plugin). Leftovers of an earlier crashed run are removed first
# (stop-multinode-slurm.sh). Needs root and the Debian packages slurmctld slurmd slurm-client munge iproute2.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
B=${SLURM_MN_BASE:-${TMPDIR:-/tmp}/cpt-mn-slurm}
N=${SLURM_MN_NODES:-2}
NET=${SLURM_MN_NET:-10.231.117}          # the private /24: .1 the host's bridge, .11.. the nodes
PREFIX=${SLURM_MN_PREFIX:-cptmn}         # names of the bridge (${PREFIX}br), veths and namespaces
CLUSTER=${SLURM_MN_CLUSTER:-cpt-multinode}
PARTITION=${SLURM_MN_PARTITION:-debug}
CTLD_PORT=${SLURM_MN_CTLD_PORT:-6827}
SLURMD_PORT=${SLURM_MN_SLURMD_PORT:-6828}
NODE_CPUS=${SLURM_MN_NODE_CPUS:-2}
NODE_MEM=${SLURM_MN_NODE_MEM:-8000}
[ "$(id -u)" = 0 ] || { echo "start-multinode-slurm: must run as root" >&2; exit 3; }
for exe in slurmctld slurmd munged sinfo ip nsenter unshare; do
  command -v "$exe" >/dev/null 2>&1 || [ -x "/usr/sbin/$exe" ] || {
    echo "start-multinode-slurm: $exe not installed (run .ci/slurm-setup.sh --install as root)" >&2; exit 3; }
done
[ "$N" -ge 1 ] && [ "$N" -le 200 ] || { echo "start-multinode-slurm: SLURM_MN_NODES must be 1..200" >&2; exit 3; }

SLURM_MN_BASE=$B SLURM_MN_PREFIX=$PREFIX bash "$HERE/stop-multinode-slurm.sh" >/dev/null 2>&1 || true
mkdir -p "$B"/{run,state,log,etc-slurm,munge}
HOST=$(hostname -s)
BR=${PREFIX}br
NODES=$(seq -s, 1 "$N" | sed 's/[0-9]\+/node&/g')

# ---- network: bridge + one namespace per node ----
ip link add "$BR" type bridge
ip addr add "$NET.1/24" dev "$BR"
ip link set "$BR" up
{ echo "127.0.0.1 localhost"; echo "$NET.1 $HOST"; } > "$B/hosts"
for i in $(seq "$N"); do echo "$NET.$((10 + i)) node$i" >> "$B/hosts"; done
for i in $(seq "$N"); do
  ns=${PREFIX}-node$i
  ip netns add "$ns"
  ip link add "${PREFIX}v$i" type veth peer name "${PREFIX}p$i"
  ip link set "${PREFIX}v$i" master "$BR" up
  ip link set "${PREFIX}p$i" netns "$ns"
  ip -n "$ns" link set "${PREFIX}p$i" name eth0
  ip -n "$ns" addr add "$NET.$((10 + i))/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
done
echo "hosts: files" > "$B/nsswitch.conf"

# ---- munge on its own socket ----
M=$B/munge
dd if=/dev/urandom bs=1 count=1024 of="$M/munge.key" 2>/dev/null
chown -R munge:munge "$M"; chmod 700 "$M"; chmod 400 "$M/munge.key"
runuser -u munge -- /usr/sbin/munged --force -S "$M/munge.socket" --key-file "$M/munge.key" \
  --pid-file "$M/munged.pid" --log-file "$M/munged.log" --seed-file "$M/munged.seed"
for _ in $(seq 50); do munge -S "$M/munge.socket" -n >/dev/null 2>&1 && break; sleep 0.1; done
munge -S "$M/munge.socket" -n >/dev/null || { echo "start-multinode-slurm: munged does not answer" >&2; exit 4; }

# ---- slurm.conf (one file: the host's slurmctld and every node's slurmd) ----
cat > "$B/slurm.conf" <<CONF
# $N-node SLURM on one machine for tests (written by tests/slurm/start-multinode-slurm.sh)
ClusterName=${CLUSTER}
SlurmctldHost=${HOST}(${NET}.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=${M}/munge.socket
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
SchedulerType=sched/backfill
SlurmctldPidFile=$B/run/slurmctld.pid
SlurmdPidFile=$B/run/slurmd-%n.pid
SlurmdSpoolDir=$B/spool/%n
StateSaveLocation=$B/state
SlurmctldLogFile=$B/log/slurmctld.log
SlurmdLogFile=$B/log/slurmd-%n.log
SlurmctldPort=${CTLD_PORT}
SlurmdPort=${SLURMD_PORT}
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$B/log/jobcomp.txt
MinJobAge=600
InactiveLimit=0
KillWait=5
Waittime=0
SlurmctldTimeout=30
SlurmdTimeout=10
MessageTimeout=10
DefMemPerCPU=1000
NodeName=node[1-${N}] NodeAddr=$(for i in $(seq "$N"); do printf '%s' "$NET.$((10 + i))"; [ "$i" -lt "$N" ] && printf ,; done) NodeHostname=${NODES} CPUs=${NODE_CPUS} RealMemory=${NODE_MEM} State=UNKNOWN
PartitionName=${PARTITION} Nodes=node[1-${N}] Default=YES MaxTime=INFINITE State=UP
CONF
cp "$B/slurm.conf" "$B/etc-slurm/slurm.conf"
export SLURM_CONF=$B/slurm.conf

/usr/sbin/slurmctld -c -f "$SLURM_CONF"          # daemonizes; -c: clean state
for i in $(seq "$N"); do  # slurmd in the node's namespaces (multinode-node.sh start)
  SLURM_MN_BASE=$B SLURM_MN_PREFIX=$PREFIX bash "$HERE/multinode-node.sh" start "node$i"
done
for _ in $(seq 150); do
  [ "$(sinfo -h -N -o %T 2>/dev/null | grep -cx idle)" = "$N" ] && break; sleep 0.2
done
[ "$(sinfo -h -N -o %T | grep -cx idle)" = "$N" ] || {
  echo "start-multinode-slurm: not all $N nodes are idle; see $B/log" >&2; sinfo -N >&2 || true; exit 4; }
echo "SLURM_CONF=$SLURM_CONF"
