"""Rollout rules and their run: the strategy (batches, canary, failure budget), the
gates (pause, promote, abort), and the run of a job's batches through its gates."""
