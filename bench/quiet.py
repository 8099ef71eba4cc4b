"""Run a ``signin`` command with waitress's "Task queue depth" warning silenced.

``python -m bench.quiet serve ...`` is ``signin serve ...`` but for that one
logger: ``bench.run --quiet-queue`` runs the ceiling apps and signin serve
this way, to show what the warning, logged for nearly every request once the
connections outnumber waitress's threads, costs. The service itself is
unchanged.
"""

from __future__ import annotations

import logging
import sys


def silence_queue_warning() -> None:
    """Drop waitress's "Task queue depth is N" warnings (the ``waitress.queue`` logger)."""
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)


def main() -> int:
    """Silence the warning, then run the ``signin`` command line with this process's arguments."""
    from signin.cli import main as signin

    silence_queue_warning()
    return signin()


if __name__ == "__main__":
    sys.exit(main())
