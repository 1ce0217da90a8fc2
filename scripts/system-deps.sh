#!/usr/bin/env bash
# Make sure the Debian packages a target needs are installed.
#   scripts/system-deps.sh run    python3 + venv (the demo fleet needs no OpenSSH server)
#   scripts/system-deps.sh test   + OpenSSH server and client, Chromium, Node.js and npm, PostgreSQL,
#                                   Redis, nginx
#   scripts/system-deps.sh cluster + PostgreSQL, Redis, nginx (`make cluster`)
#   scripts/system-deps.sh chaos  + PostgreSQL, Redis, nginx, OpenSSH server and client
# As root on Debian it installs what is missing with apt-get; otherwise it prints the
# exact command to run first and fails.
set -euo pipefail

target=${1:-run}
missing=()

have_python_venv() {
  local python=${PYTHON:-python3}
  command -v "$python" >/dev/null 2>&1 && "$python" -c 'import ensurepip, venv' >/dev/null 2>&1
}

have_postgres_server() {
  local server
  for server in /usr/lib/postgresql/*/bin/postgres; do
    [ -x "$server" ] && return 0
  done
  return 1
}

have_python_venv || missing+=(python3 python3-venv)
if [ "$target" = test ] || [ "$target" = chaos ]; then
  [ -x /usr/sbin/sshd ] || missing+=(openssh-server)
  command -v ssh-keygen >/dev/null 2>&1 || missing+=(openssh-client)
fi
if [ "$target" = test ]; then
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  command -v ps >/dev/null 2>&1 || missing+=(procps)
  command -v node >/dev/null 2>&1 || missing+=(nodejs)  # tests/js: node --test
  command -v npm >/dev/null 2>&1 || missing+=(npm)  # tests/a11y: npm ci (axe-core)
fi
if [ "$target" = test ] || [ "$target" = cluster ] || [ "$target" = chaos ]; then
  have_postgres_server || missing+=(postgresql)
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  [ -x /usr/sbin/nginx ] || missing+=(nginx)
fi
command -v setsid >/dev/null 2>&1 || missing+=(util-linux)

[ ${#missing[@]} -eq 0 ] && exit 0

command="apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "Missing system packages: ${missing[*]}" >&2
  echo "Run this first (as root):" >&2
  echo "  sudo sh -c '$command'" >&2
  exit 1
fi
