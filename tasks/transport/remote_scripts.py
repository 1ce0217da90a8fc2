"""The shell scripts Patchbay runs on a server, and how their arguments are passed.

Every script runs in the login shell sshd starts for a channel (bash, dash, ksh, zsh:
POSIX, with bash-only parts behind ``eval``), its arguments quoted as positional
parameters, never spliced into the script. docs/remote-steps.md tells operators what
they do; the comments here say why they are shaped as they are.

**One agent shell per server per job.** :data:`AGENT_SCRIPT` runs on one channel for
all of a job's steps on a server. It starts two ``tee -p -a`` processes once, one per
stream, appending to ``out.<agent>`` and ``err.<agent>`` in the host's run directory and
passing everything on to the channel, and then runs each step it is sent in a subshell
whose stdout and stderr are those two pipes. After a step it writes an end marker line
with the step's exit status to both streams, then the step's ``status`` file. A step
therefore costs the server one fork and the command's own programs: a channel of its
own (sshd's session, a login shell) and two ``tee`` processes per step cost each server
about 20 ms of CPU per three-step job more than running the bare commands did.

When the connection breaks, ``tee -p`` goes on writing the files; the step never
notices, and the agent, reading end of input, runs nothing more once it ends.
"""

from __future__ import annotations

import re
import shlex

AGENT_MARKER = b"@@patchbay-agent "  # the agent's first line: its PID (the steps' PGID)
ERROR_MARKER = b"@@patchbay-error "  # the agent could not start: why
ATTACH_MARKER = b"@@patchbay-attach "  # ATTACH_SCRIPT's first line: the step's marker
END_MARKER = b"@@patchbay-end "  # after a step's output, on both streams
NO_RUN_DIR = 125  # the agent's exit status when it cannot make the run directory

# $1: the host's run directory; $2: the agent's id (names its output files).
#
# Its first line on the channel is AGENT_MARKER and its PID, or ERROR_MARKER and why it
# could not make the run directory (exit 125). Then it reads requests on stdin:
#   "step KEY MARKER OUT ERR N" and N lines of command: run the command as step KEY,
#     whose output begins at byte OUT of out.<agent> and ERR of err.<agent> (what the
#     console has read of them so far);
#   "remove": remove the run directory (and end).
# Its stdin is the console: when the connection breaks it reads end of input and ends
# after the step it is running.
#
# The step's command runs by `eval` in a subshell with stdin from /dev/null, in the
# shell's working directory: `exit N` ends only that subshell, a syntax error in it is
# its own failure, and it sees no variable of this script. The end marker goes to both
# streams after a newline (the step's last line may have none; the console drops that
# one newline), once the subshell has ended; then the status file. The marker names
# the step by a token the console sent, which output cannot contain by chance.
#
# The agent's own files (the run directory and the root it makes, out/err, the FIFOs,
# start/pgid/status) are made under umask 077: a step's output may hold a secret, and
# other accounts on the server must not read it. Each step's command runs under the
# login shell's own umask again, so what the runbook makes (a deployed build) keeps the
# modes the account always gives it.
#
# Under bash the tees are process substitutions; a POSIX shell has none, so there they
# read named pipes (one mkfifo per agent).
AGENT_SCRIPT = r"""
__pb_h=$1 __pb_a=$2 __pb_u=$(umask)
umask 077
[ -d "$__pb_h" ] || mkdir -p -- "$__pb_h" 2>/dev/null || __pb_e=$(mkdir -p -- "$__pb_h" 2>&1) || {
  printf '@@patchbay-error %s\n' "$(printf %s "$__pb_e" | tr '\n' ' ')"; exit 125; }
exec 3>&1
if [ -n "${BASH_VERSION-}" ]; then
  eval 'exec 2> >(exec tee -p -a "$__pb_h/err.$__pb_a" >&2 2>/dev/null)'; __pb_te=$!
  eval 'exec > >(exec tee -p -a "$__pb_h/out.$__pb_a" 2>/dev/null)'; __pb_to=$!
else
  mkfifo -- "$__pb_h/o.$__pb_a" "$__pb_h/e.$__pb_a" || exit 125
  tee -p -a "$__pb_h/err.$__pb_a" <"$__pb_h/e.$__pb_a" >&2 2>/dev/null 3>&- & __pb_te=$!
  exec 2>"$__pb_h/e.$__pb_a"
  tee -p -a "$__pb_h/out.$__pb_a" <"$__pb_h/o.$__pb_a" 2>/dev/null 3>&- & __pb_to=$!
  exec >"$__pb_h/o.$__pb_a"
fi
printf '@@patchbay-agent %s\n' $$ >&3
exec 3>&-
while IFS=' ' read -r __pb_k __pb_s __pb_n __pb_o __pb_e __pb_l; do
  case $__pb_k in
  step)
    __pb_c=
    while [ "$__pb_l" -gt 0 ]; do
      IFS= read -r __pb_x || exit 0
      __pb_c="$__pb_c$__pb_x
"
      __pb_l=$((__pb_l - 1))
    done
    { echo "$__pb_a $__pb_o $__pb_e $__pb_n $__pb_to $__pb_te" > "$__pb_h/$__pb_s.start"
      echo $$ > "$__pb_h/$__pb_s.pgid"; } 2>/dev/null
    ( set -- "$__pb_c"
      umask "$__pb_u"
      unset __pb_u __pb_k __pb_s __pb_n __pb_o __pb_e __pb_l __pb_c __pb_x __pb_h __pb_a
      unset __pb_to __pb_te
      eval "shift; $1" ) </dev/null
    __pb_x=$?
    printf '\n@@patchbay-end %s %s\n' "$__pb_n" "$__pb_x"
    printf '\n@@patchbay-end %s %s\n' "$__pb_n" "$__pb_x" >&2
    { echo "$__pb_x" > "$__pb_h/$__pb_s.status"; } 2>/dev/null ;;
  remove) exec rm -rf -- "$__pb_h" ;;
  *) exit 2 ;;
  esac
done
"""

# $1: host run directory; $2: step key; $3, $4: bytes of the step's stdout / stderr
# already read. Prints ATTACH_MARKER and the step's end marker token, then the rest of
# its output (with its end markers, once written), following both files until the tee
# writing each has ended. The console stops reading at the end markers: an agent whose
# connection is half-open lives on (and its tees) until TCP gives up on it.
# A step started before the agent (a console upgraded mid-job) has a directory of its
# own ($1/$2: pgid, out, err, status): its output is sent from there, until its group's
# leader exits, behind a token no marker has (the console then reads its status).
ATTACH_SCRIPT = r"""
if [ -f "$1/$2/pgid" ]; then
  cd "$1/$2" && { read p < pgid; } 2>/dev/null || exit 0
  printf '@@patchbay-attach %s\n' before0agent
  if [ -f status ]; then
    tail -c +$(($3 + 1)) out 2>/dev/null; tail -c +$(($4 + 1)) err >&2 2>/dev/null; exit 0; fi
  tail -c +$(($3 + 1)) -s 0.1 -f --pid="$p" out 2>/dev/null &
  tail -c +$(($4 + 1)) -s 0.1 -f --pid="$p" err >&2 2>/dev/null
  wait; exit 0
fi
cd "$1" 2>/dev/null && { read a o e n to te < "$2.start"; } 2>/dev/null || exit 0
printf '@@patchbay-attach %s\n' "$n"
tail -c +$((o + $3 + 1)) -s 0.1 -f --pid="$to" "out.$a" 2>/dev/null &
tail -c +$((e + $4 + 1)) -s 0.1 -f --pid="$te" "err.$a" >&2 2>/dev/null
wait
"""

# $1: host run directory; $2: step key. Prints "STATE PGID EXIT": the status is read
# again after the group is found gone, since the step may have ended between the two
# looks. A step started before the agent keeps its files in $1/$2/ (ATTACH_SCRIPT).
STATUS_SCRIPT = r"""
cd "$1" 2>/dev/null || { echo missing - -; exit 0; }
f=$2.; [ -f "$2/pgid" ] && f=$2/
{ read p < "${f}pgid"; } 2>/dev/null || { echo missing - -; exit 0; }
if { read c < "${f}status"; } 2>/dev/null; then echo exited "$p" "$c"
elif kill -s 0 -- -"$p" 2>/dev/null; then echo running "$p" -
elif { read c < "${f}status"; } 2>/dev/null; then echo exited "$p" "$c"
else echo vanished "$p" -; fi
"""

# $1: signal name; $2: host run directory; $3: step key.
SIGNAL_SCRIPT = r"""
f=$2/$3.; [ -f "$2/$3/pgid" ] && f=$2/$3/
{ read p < "${f}pgid"; } 2>/dev/null || exit 3
[ -f "${f}status" ] && exit 0
kill -s "$1" -- -"$p"
"""

# $1: host run directory; $2: run root; $3: minutes a job directory is kept. One find
# (and the rm it starts) removes both: the host's directory, and every job directory
# directly under the root that is older than that (`-path "$2/*/*"` is any deeper one).
# Other hosts of the same account may be removing theirs at the same moment: what
# vanished under find is no error.
CLEAN_SCRIPT = r"""
[ -d "$2" ] || exit 0
find "$2" -mindepth 1 -maxdepth 2 \( -path "$1" -o ! -path "$2/*/*" -mmin +"$3" \) \
  -prune -exec rm -rf -- {} + 2>/dev/null
exit 0
"""

# $1: host run directory, removed when no agent is left to do it. The login shell runs a
# command line's last command in place (bash and dash do), so it costs the server one
# program and no fork. (No redirection: with one, bash forks first. rm's complaints go
# to the channel's stderr, which nobody reads.)
REMOVE_SCRIPT = 'rm -rf -- "$1"'


def remote_script(script: str, *args: str) -> str:
    """A command line that runs ``script`` in the login shell sshd starts, with ``args``
    as its positional parameters (quoted, never spliced into the script). A path
    starting ``~/`` becomes ``"$HOME"/...`` so the remote expands it.

    The script runs in that shell itself, not in a further ``sh -c``: every process
    spared is one fewer fork and exec per step on the server."""
    return " ".join(["set --", *(_remote_path(arg) for arg in args)]) + "\n" + script


def _remote_path(value: str) -> str:
    if value.startswith("~/"):
        return '"$HOME"/' + shlex.quote(value[2:])
    return shlex.quote(value)


def step_request(key: str, token: str, offsets: tuple[int, int], command: str) -> bytes:
    """The agent's request to run ``command`` as step ``key`` (see AGENT_SCRIPT). The
    key and token are single words of Patchbay's own making; the command goes as its
    lines, read back one by one, so any text (quotes, newlines) reaches ``eval`` as it
    is."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", key) or not token.isalnum():
        raise ValueError(f"not a step key and token an agent can read: {key!r} {token!r}")
    lines = command.split("\n")
    head = f"step {key} {token} {offsets[0]} {offsets[1]} {len(lines)}\n"
    return (head + "\n".join(lines) + "\n").encode()


REMOVE_REQUEST = b"remove\n"
