"""Benchmarks: Patchbay against the tools an ops team would use instead (see
docs/benchmarks.md). ``python -m bench --quick`` or ``make bench`` runs them."""
