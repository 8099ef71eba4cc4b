"""The settings signin runs with, read from the environment and checked: see ``signin/settings.py``.

The settings live in the package, so that they install with it (a top-level
module named ``config`` would land in site-packages beside everyone else's);
this module stays for scripts that read ``config.Config``.
"""

import os
from types import SimpleNamespace

from signin import settings

Config = SimpleNamespace(**settings.load(os.environ))
