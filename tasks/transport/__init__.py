"""The wire: the protocol the engine runs steps through, and its SSH implementation
(connecting, client keys and agents, known hosts, the detached remote scripts, reading a
step's output, and the stop sequence TERM, grace, KILL)."""
