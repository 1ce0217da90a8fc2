"""The job engine: runbooks, inventory, strategy, runner, event log, SSH transport.

Nothing in this package knows about Flask requests or Socket.IO.
"""
