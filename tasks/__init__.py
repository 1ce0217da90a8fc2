"""The job engine: from a runbook and servers to a plan, the run of each rollout, server
and step over SSH, and the event log every client reads.

May import: ``models`` and ``config`` (and the standard library and its own engine
packages, each only from those below it: see docs/architecture.md). Never Flask,
Socket.IO, ``extensions``, ``services`` or ``blueprints``: the engine runs, and is
tested, without a web app (tests/house/test_layout.py checks it).

- ``engine.py``: the facade the console calls (start, cancel, gates, resume, takeover).
- ``planning/``: runbooks, placeholders, inventory, ad-hoc commands, rollback, secrets.
- ``rollout/``: the rollout rules (strategy, gates) and the run of batches and gates.
- ``running/``: one job's run, one server's run, the step driver, output coalescing.
- ``events/``: the event log (writer, catalogue, resume, pages).
- ``transport/``: the protocol and its SSH implementation (session, keys, known hosts,
  remote scripts, step output, the stop sequence).
- ``nodes/``: node membership, takeover and the health of shared dependencies.
- ``meters.py``: the metric objects every layer counts into; ``errors.py``: the one
  error type with a code and a field.
"""
