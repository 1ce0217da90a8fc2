#!/usr/bin/env bash
# Run Patchbay with a demo fleet: migrate the database, make sure the demo admin exists,
# start 8 local SSH "game servers" (an asyncssh server, no OpenSSH needed), import them,
# then serve the console until Ctrl-C or SIGTERM, which also stops the fleet, and the
# fleet its game servers and simulated players. If an SSH or game address:port the
# fleet needs is taken, it says by which process and starts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-.venv/bin/python}
state=${PATCHBAY_DEMO_DIR:-$PWD/.demo}
port=${PATCHBAY_PORT:-5000}
ssh_port=${PATCHBAY_DEMO_SSH_PORT:-2222}
game_port=${PATCHBAY_DEMO_GAME_PORT:-27015}
first_address=${PATCHBAY_DEMO_FIRST_ADDRESS:-127.0.0.11}
fleet=(-m demo.sshfleet --for-make-run --state-dir "$state/fleet" --first-address "$first_address"
  --ssh-port "$ssh_port" --game-port "$game_port")
# Before anything starts: refuses (exit 3), naming who holds an address:port.
"$PY" "${fleet[@]}" --check

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
# The README's `flask --app app …` commands, run in this folder, use the demo's instance
# (.flaskenv; not for a PATCHBAY_DEMO_DIR of its own, e.g. the tests').
if [ -z "${PATCHBAY_DEMO_DIR:-}" ]; then
  "$PY" -m demo.flaskenv .flaskenv "$PATCHBAY_INSTANCE_PATH"
fi

ready=$state/fleet.ready
children=()  # started by this script; stopped newest first on the way out

stop_children() {
  local i pid deadline
  for ((i = ${#children[@]} - 1; i >= 0; i--)); do
    pid=${children[i]}
    kill -TERM "$pid" 2>/dev/null || continue
    # The fleet stops its game servers and players before it exits (within ~15 s).
    deadline=$((SECONDS + 30))
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do
      sleep 0.1  # polling interval while waiting for a child to exit
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "make run: pid $pid still running 30 s after SIGTERM; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
}
trap stop_children EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$PY" "${fleet[@]}" --ready-file "$ready" >"$state/fleet.log" 2>&1 &
fleet_pid=$!
children+=("$fleet_pid")

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
  Demo fleet: 8 SSH game servers from $first_address, SSH port $ssh_port, game port
  $game_port ($state/fleet/inventory.yml)
  Try: runbook game-update, version 1.4.2, all servers, Run. Each server downloads
  the build for about 10 s, restarts its game server and waits for it to answer.
  To make one server fail its deploy: touch $state/fleet/hosts/gs-03/FAIL_DEPLOY

BANNER
# In the background so that a SIGTERM to this script is handled at once (bash runs
# traps only between commands, and `wait` is one it interrupts).
"$PY" app.py &
children+=("$!")
wait "$!"
