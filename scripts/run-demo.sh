#!/usr/bin/env bash
# Run Patchbay with a demo fleet: migrate the database, make sure the demo admin exists,
# start 8 local SSH "game servers" (an asyncssh server, no OpenSSH needed), import them,
# then serve the console until Ctrl-C (which also stops the fleet).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-.venv/bin/python}
state=${PATCHBAY_DEMO_DIR:-$PWD/.demo}
port=${PATCHBAY_PORT:-5000}
ssh_port=${PATCHBAY_DEMO_SSH_PORT:-2222}
export PATCHBAY_INSTANCE_PATH=${PATCHBAY_INSTANCE_PATH:-$state/instance}
export PATCHBAY_PORT=$port
mkdir -p "$state"

if [ -z "${PATCHBAY_ADMIN_PASSWORD:-}" ]; then
  password_file=$state/admin-password
  if [ ! -s "$password_file" ]; then
    (umask 077; "$PY" -c 'import secrets; print(secrets.token_urlsafe(12))' >"$password_file")
  fi
  PATCHBAY_ADMIN_PASSWORD=$(cat "$password_file")
  export PATCHBAY_ADMIN_PASSWORD
fi

"$PY" -m flask --app app db upgrade 2>&1 | grep -v '^INFO' || true
"$PY" -m flask --app app ensure-admin --username admin
"$PY" -m flask --app app check-runbooks

ready=$state/fleet.ready
"$PY" -m demo.sshfleet --state-dir "$state/fleet" --ssh-port "$ssh_port" \
  --ready-file "$ready" --stop-games >"$state/fleet.log" 2>&1 &
fleet_pid=$!
trap 'kill "$fleet_pid" 2>/dev/null || true; wait "$fleet_pid" 2>/dev/null || true' EXIT
trap 'exit 130' INT TERM

deadline=$((SECONDS + 60))
until [ -s "$ready" ]; do
  if ! kill -0 "$fleet_pid" 2>/dev/null; then
    echo "The demo fleet did not start; its log ($state/fleet.log):" >&2
    tail -n 20 "$state/fleet.log" >&2
    exit 1
  fi
  if [ $SECONDS -ge $deadline ]; then
    echo "The demo fleet was not ready after 60 s; see $state/fleet.log" >&2
    exit 1
  fi
  sleep 0.2  # polling interval while waiting for the ready file
done
"$PY" -m flask --app app import-inventory "$state/fleet/inventory.yml"

cat <<BANNER

  Patchbay is starting on http://127.0.0.1:$port
  Log in as:  admin / $PATCHBAY_ADMIN_PASSWORD
  Demo fleet: 8 SSH game servers from 127.0.0.11, port $ssh_port ($state/fleet/inventory.yml)
  Try: runbook game-update, version 1.4.2, all servers, Run. Each server downloads
  the build for about 10 s, restarts its game server and waits for it to answer.
  To make one server fail its deploy: touch $state/fleet/hosts/gs-03/FAIL_DEPLOY

BANNER
"$PY" app.py
