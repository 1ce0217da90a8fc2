"""Running a job: the job run, one server's run (its steps, on_failure, the version
probe), the step driver (start or re-attach, follow, reconnect, wait probes, judging the
result), outcomes, and the coalescing of output into events."""
