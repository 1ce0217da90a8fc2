"""``patchbay``: start, follow and inspect Patchbay jobs from a shell or a CI pipeline.

It speaks only the console's public API (``docs/live-api.md``): the JSON API with a
bearer token, and Socket.IO for following a job live. See ``docs/cli.md``.
"""
