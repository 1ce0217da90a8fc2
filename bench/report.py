"""Plots and the generated part of docs/benchmarks.md (stub while developing)."""


def write(results):
    return []
