"""HTTP pages, the JSON API and the Socket.IO handlers, one module per feature."""
