"""Processes bayesguide owns: how a sweep starts its workers, and their exit.

[`worker_context`][bayesguide.process.worker_context] starts a sweep's workers from a fork
server that has imported their modules once (the start-up cost of a worker is those
imports). It lives here, beside the standard library only, so that ``bayesguide sweep``
can start the server before it imports the torch stack itself.

The exit: skip the garbage collector's last pass over torch.

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
import multiprocessing
from multiprocessing import forkserver
from multiprocessing.context import BaseContext

__all__ = ["WORKER_MODULES", "freeze_at_exit", "worker_context"]

_REGISTERED = False


def freeze_at_exit() -> None:
    """Freeze the garbage collector at this process's exit, after its other exit handlers (once)."""
    global _REGISTERED
    if not _REGISTERED:
        atexit.register(gc.freeze)
        _REGISTERED = True


WORKER_MODULES = ("bayesguide.sweeps.point", "torch._dynamo", "sklearn.datasets")
"""What every worker imports before its first point is done: the point's code, what
`torch.optim` imports at an optimiser's first step (torch's compiler front end, 3 s) and
the bundled data sets — 10 s in all on a 2-core machine, the local pool's whole start-up
cost. The pool's fork server imports them once (`worker_context`)."""


def worker_context(extra: tuple[str, ...] = ()) -> BaseContext:
    """How a sweep starts its workers: a fork server that has imported `WORKER_MODULES`, else ``spawn``.

    ``forkserver`` (Python 3.14's default on Linux) starts one fresh interpreter — not a
    copy of this process, its threads or its state — which imports the workers' modules
    once; each worker is a fork of it and starts with them imported. The server is
    started here, so it imports while the sweep prepares its points, and it lives as
    long as this process: a second sweep from the same notebook or script starts its
    workers at once. (A fork server this process already runs is used as it is.) Where
    there is no fork server (Windows), workers are spawned and each imports the modules
    itself. ``extra`` names more modules for a server started now (the Dask executor's
    LocalCluster adds ``distributed``).
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([*WORKER_MODULES, *extra])
    forkserver.ensure_running()
    return context
