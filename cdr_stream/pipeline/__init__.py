"""The retry-and-commit loop and the runs built on it: the live poller, backfill and dead-letter replay."""
