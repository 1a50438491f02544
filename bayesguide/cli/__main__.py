"""``python -m bayesguide.cli``: the ``bayesguide`` command."""

from __future__ import annotations

import sys

from bayesguide.cli import console

sys.exit(console())
