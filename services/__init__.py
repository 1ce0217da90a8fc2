"""What the console does on a user's behalf, whatever door the request came through
(REST, Socket.IO, the ``flask`` CLI): validation, the engine call, the audit entry.
Blueprints parse and answer; they call these."""
