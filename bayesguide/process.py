"""Processes bayesguide owns: skip the garbage collector's last pass over torch at exit.

A Python process that has imported torch and run a fit spends 1.5–2.2 s at exit in the
interpreter's last garbage collections over torch's objects (measured from the end of the
work to the end of the process: a ``bayesguide run`` of a tiny experiment, a sweep worker).
Everyone waiting on that process waits with it: the shell for the ``bayesguide`` command,
a sweep for its workers. [`freeze_at_exit`][bayesguide.process.freeze_at_exit], called early
in the process's life, registers ``gc.freeze()`` as an exit handler; exit handlers run last
in, first out, so it runs after those registered later (torch's, libraries' clean-ups,
temporary directories). The objects then alive are out of the collector's reach and their
memory goes back to the system with the process, in 0.1–0.4 s.
Objects still alive are finalised as always; only garbage caught in reference cycles is
not collected before the process ends. It is used only in processes bayesguide starts —
the ``bayesguide`` executable and a sweep's workers — never in a user's own Python
process, whose exit is the user's business.
"""

from __future__ import annotations

import atexit
import gc

__all__ = ["freeze_at_exit"]

_REGISTERED = False


def freeze_at_exit() -> None:
    """Freeze the garbage collector at this process's exit, after its other exit handlers (once)."""
    global _REGISTERED
    if not _REGISTERED:
        atexit.register(gc.freeze)
        _REGISTERED = True
