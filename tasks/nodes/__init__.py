"""Console nodes: heartbeats, taking over the jobs of dead nodes, and the health of the
shared dependencies (database, message queue) as the Nodes page shows it."""
