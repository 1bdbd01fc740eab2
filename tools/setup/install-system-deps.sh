#!/usr/bin/env bash
# Installs the Debian packages stevedore's tests, demo and benchmarks talk to, when they are missing:
#   redis-server      Redis for BullMQ queues and locks
#   docker-registry   the CNCF distribution registry (command docker-registry)
#   openssl           certificates for the registry's token auth in tests
#   apache2-utils     htpasswd, for the registry's basic auth in tests
#   skopeo, podman    real clients that read stevedore's exports (tests and benchmarks)
#   chromium          the browser that checks Bull Board in the tests (driven by playwright-core)
# As root it runs apt-get; otherwise it prints exactly what to install and fails.
set -euo pipefail

declare -A need=(
  [redis-server]=redis-server
  [docker-registry]=docker-registry
  [openssl]=openssl
  [htpasswd]=apache2-utils
  [skopeo]=skopeo
  [podman]=podman
  [chromium]=chromium
)

missing=()
for cmd in "${!need[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${need[$cmd]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
  echo "stevedore needs these Debian packages: ${missing[*]}" >&2
  echo "install them with: sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "installing Debian packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >&2
apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
# Debian starts the packaged services; stevedore runs its own private instances on free ports.
for svc in redis-server docker-registry; do
  if command -v systemctl >/dev/null 2>&1; then systemctl disable --now "$svc" >/dev/null 2>&1 || true; fi
done
