"""The pydantic schemas of the console's two doors (the JSON API and Socket.IO), one
module per job:

- ``payloads.py``: one schema per client payload (Socket.IO events and JSON API
  bodies); they validate (``services.commands.parse``).
- ``answers.py``: the shapes of the JSON API's answers, and ``queries.py``: of its query
  strings. They document: ``/api/openapi.json`` is generated from them, and the tests
  check every route's answers against that document.
- ``fields.py``: the field types the others share (names, timestamps, statuses).
- ``nul.py``: finding a NUL character anywhere in a payload (refused at both doors).
"""
