#!/usr/bin/env bash
# Install and start what the test suite needs on a fresh Debian machine (idempotent):
# Docker engine, debootstrap (image builds without a registry), Chromium (e2e), PostgreSQL, Node.
# `--demo` (make demo) installs only what the demo runs on: no Chromium, no PostgreSQL.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
demo=false
[ "${1:-}" = "--demo" ] && demo=true
need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v iptables >/dev/null || need+=(iptables)
command -v ip >/dev/null && command -v ss >/dev/null || need+=(iproute2)  # hub network checks, tests
command -v npm >/dev/null || need+=(nodejs npm)
python3 -c 'import ensurepip' 2>/dev/null || need+=(python3-venv)
if ! $demo; then
  command -v chromium >/dev/null || need+=(chromium)
  command -v certutil >/dev/null || need+=(libnss3-tools)  # the test browser trusts the test CA
  [ -x /usr/lib/postgresql/15/bin/postgres ] || command -v pg_ctlcluster >/dev/null || need+=(postgresql)
fi
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Docker engine: no systemd here, so start dockerd ourselves with its log in a file. no-new-privileges
# is a daemon setting, as on a TRE node (ansible docker_host): Swarm services cannot set it per service.
if pgrep -x dockerd >/dev/null && ! pgrep -ax dockerd | grep -q -- --no-new-privileges; then
  pkill -x dockerd; for _ in $(seq 1 30); do pgrep -x dockerd >/dev/null || break; sleep 1; done
fi
if ! docker info >/dev/null 2>&1; then
  mkdir -p /var/log
  (dockerd --no-new-privileges >/var/log/dockerd.log 2>&1 &)
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { echo "dockerd did not start; see /var/log/dockerd.log"; tail -20 /var/log/dockerd.log; exit 1; }
fi

# PostgreSQL for the registry/hub tests against a real server.
if ! $demo && command -v pg_ctlcluster >/dev/null; then
  ver=$(ls /usr/lib/postgresql | sort -n | tail -1)
  pg_lsclusters -h | grep -q "^$ver main" || pg_createcluster "$ver" main >/dev/null
  pg_ctlcluster "$ver" main start 2>/dev/null || true
  su postgres -c "psql -tAc \"select 1 from pg_roles where rolname='tre'\"" | grep -q 1 \
    || su postgres -c "psql -q -c \"create role tre login password 'tre' createdb\""
fi
echo "host ready: docker $(docker version --format '{{.Server.Version}}'), node $(node --version)$($demo || echo ', postgres')"
