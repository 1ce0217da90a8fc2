"""The JSON API (``/api/...``, docs/live-api.md and ``/api/openapi.json``) and
``/metrics``: for scripts, the CLI and Prometheus."""
