#!/usr/bin/env bash
# Start a single-node SLURM (slurmctld + slurmd + munged) on localhost, for the integration tests and CI.
#
#   SLURM_BASE=/some/dir bash tests/slurm/start-local-slurm.sh
#
# Writes $SLURM_BASE/slurm.conf (state, spool, pid and log files all under $SLURM_BASE) and links it to
# /etc/slurm/slurm.conf: the Snakemake jobstep executor strips every SLURM_* variable (SLURM_CONF too)
# before its inner srun, so the clients must find the config at the compiled-in default path.
# Needs root (daemons run as root, munged as user munge) and the Debian/Ubuntu packages
# slurmctld slurmd slurm-client munge (.ci/slurm-setup.sh installs them). Stop with stop-local-slurm.sh.
set -euo pipefail
B=${SLURM_BASE:-${TMPDIR:-/tmp}/cpt-local-slurm}
CLUSTER=${SLURM_CLUSTER_NAME:-cpt-local}
PARTITION=${SLURM_PARTITION:-debug}
for exe in slurmctld slurmd munged sinfo; do
  command -v "$exe" >/dev/null 2>&1 || [ -x "/usr/sbin/$exe" ] || { echo "start-local-slurm: $exe not installed (run .ci/slurm-setup.sh as root)" >&2; exit 3; }
done
[ "$(id -u)" = 0 ] || { echo "start-local-slurm: must run as root (slurmd needs it)" >&2; exit 3; }
mkdir -p "$B"/{run,spool/slurmd,state,log}
HOST=$(hostname -s)
MEM=$(( $(awk '/MemTotal/{print int($2/1024)}' /proc/meminfo) - 2048 ))
CPUS=$(nproc)
cat > "$B/slurm.conf" <<CONF
# single-node SLURM for tests (written by tests/slurm/start-local-slurm.sh)
ClusterName=${CLUSTER}
SlurmctldHost=${HOST}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
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
SlurmdPidFile=$B/run/slurmd.pid
SlurmdSpoolDir=$B/spool/slurmd
StateSaveLocation=$B/state
SlurmctldLogFile=$B/log/slurmctld.log
SlurmdLogFile=$B/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$B/log/jobcomp.txt
MinJobAge=600
InactiveLimit=0
KillWait=10
Waittime=0
SlurmctldTimeout=30
SlurmdTimeout=30
DefMemPerCPU=1000
NodeName=localhost NodeAddr=127.0.0.1 NodeHostname=${HOST} CPUs=${CPUS} RealMemory=${MEM} State=UNKNOWN
PartitionName=${PARTITION} Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
mkdir -p /etc/slurm
if [ -e /etc/slurm/slurm.conf ] && [ ! -L /etc/slurm/slurm.conf ]; then
  echo "start-local-slurm: /etc/slurm/slurm.conf is a real file (a configured cluster?); not replacing it" >&2; exit 3
fi
ln -sfn "$B/slurm.conf" /etc/slurm/slurm.conf
export SLURM_CONF=$B/slurm.conf

# munge: key, run dir, daemon (reused when one already answers)
mkdir -p /run/munge /var/lib/munge /var/log/munge
chown munge:munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
chmod 755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
  mkdir -p /etc/munge
  mungekey -c -f 2>/dev/null || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
  chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
fi
if ! munge -n >/dev/null 2>&1; then
  runuser -u munge -- /usr/sbin/munged
  echo started > "$B/run/munged.ours"
fi
for _ in $(seq 50); do munge -n >/dev/null 2>&1 && break; sleep 0.1; done
munge -n >/dev/null || { echo "start-local-slurm: munged does not answer" >&2; exit 4; }

/usr/sbin/slurmctld -c -f "$SLURM_CONF"          # daemonizes; pid in $B/run/slurmctld.pid; -c: clean state
/usr/sbin/slurmd -f "$SLURM_CONF" -N localhost
for _ in $(seq 150); do sinfo -h -o %T 2>/dev/null | grep -qx idle && break; sleep 0.2; done
sinfo -h -o %T | grep -qx idle || { echo "start-local-slurm: node not idle; see $B/log" >&2; sinfo >&2 || true; exit 4; }
echo "SLURM_CONF=$SLURM_CONF"
