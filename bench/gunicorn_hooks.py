"""gunicorn settings for the bench's gunicorn phase: only a hook that says when a worker is ready.

Loaded with ``gunicorn --config python:bench.gunicorn_hooks``; every other
setting comes from the command line.
"""

from __future__ import annotations

# What a worker logs once it has loaded the app; bench/servers.py waits for one per worker.
READY = "bench: worker ready"


def post_worker_init(worker: object) -> None:
    """Log that this worker has loaded the app and is about to serve."""
    worker.log.info("%s (pid %s)", READY, worker.pid)
