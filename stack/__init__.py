"""Private service processes for a local cluster and its tests: PostgreSQL, Redis,
nginx and console nodes, each started from Debian's packages with its data in a folder
of ours (never a system service). ``make cluster`` and the test fixtures share them."""
