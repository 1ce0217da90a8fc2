"""The event log: the one writer (numbering each job's ``seq``, write-then-emit), the
event catalogue (types, data shapes, how each reads as text), what a job's log says of
its progress (resume), paged reads and what a failed write means."""
