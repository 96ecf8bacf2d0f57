#!/usr/bin/env bash
# Install (apt-get, as root) and start a single-node SLURM on this machine, for the SLURM integration tests.
#
#   sudo .ci/slurm-setup.sh            # install if missing, then start (no-op when a cluster already answers)
#   sudo .ci/slurm-setup.sh --install  # install only; the tests' fixture starts and stops the daemons itself
#
# Debian/Ubuntu packages: slurmctld slurmd slurm-client munge (~10 s), and iproute2
# for the multi-node test cluster (tests/slurm/start-multinode-slurm.sh). Daemons are started by hand (no
# systemd needed) from tests/slurm/start-local-slurm.sh with state under $SLURM_BASE (default
# ${TMPDIR:-/tmp}/cpt-local-slurm); stop them with tests/slurm/stop-local-slurm.sh.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
if ! command -v slurmctld >/dev/null 2>&1 && [ ! -x /usr/sbin/slurmctld ]; then
  [ "$(id -u)" = 0 ] || { echo "slurm-setup: SLURM is not installed and this is not root; cannot install" >&2; exit 3; }
  command -v apt-get >/dev/null 2>&1 || { echo "slurm-setup: no apt-get here; install slurmctld slurmd slurm-client munge by hand" >&2; exit 3; }
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
  echo "slurm-setup: installed $(dpkg-query -W -f='slurmctld ${Version}' slurmctld)"
fi
if ! command -v ip >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  # the multi-node test cluster (tests/slurm/start-multinode-slurm.sh) builds network namespaces with `ip`
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iproute2 >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iproute2 >/dev/null; }
fi
[ "${1:-}" = "--install" ] && exit 0
# a Slurm client without SLURM_CONF and without /etc/slurm/slurm.conf does a DNS SRV lookup: ask only with a config
if { [ -f "${SLURM_CONF:-}" ] || [ -f /etc/slurm/slurm.conf ]; } && sinfo -h -o %T 2>/dev/null | grep -q .; then
  echo "slurm-setup: a SLURM controller already answers:"; sinfo; exit 0
fi
exec bash "$HERE/tests/slurm/start-local-slurm.sh"
