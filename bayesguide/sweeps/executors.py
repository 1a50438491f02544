"""Where a sweep's points run: one interface over a process pool, Dask, and this process.

An executor takes [`PointTask`][bayesguide.sweeps.point.PointTask] s
([`Executor.submit`][bayesguide.sweeps.executors.Executor.submit])
and hands back ``(task, outcome)`` pairs as the points finish
([`Executor.completed`][bayesguide.sweeps.executors.Executor.completed],
which also yields tasks submitted while it iterates — the retries). The outcome is the
point's summary, or a [`WorkerLost`][bayesguide.sweeps.executors.WorkerLost] when the process running it died (killed,
out of memory): the sweep decides whether to submit it again. No scheduling is written
here: the local executor is `concurrent.futures.ProcessPoolExecutor` (workers forked from
a fresh fork server that has imported their modules,
[`worker_context`][bayesguide.process.worker_context]; a fresh pool after a worker died)
and the Dask executor is
``distributed``'s `Client` with its futures and
`as_completed`.

* ``serial`` — every point in this process, one after the other (debugging; the same
  thread count as the others, so the same numbers);
* ``local`` — a pool of ``workers`` processes on this machine;
* ``dask`` — a Dask cluster: ``scheduler = "tcp://HOST:8786"`` connects to a running
  one (every worker must have bayesguide installed and see the sweep directory),
  ``scheduler = "local"`` starts a `distributed.LocalCluster` of ``workers``
  single-threaded worker processes on loopback for the sweep's duration, started as the
  pool's are ([`worker_context`][bayesguide.process.worker_context]), with quiet workers
  (`QUIET_WORKERS`). Their statistical profiler is off (`PROFILER_OFF`): it samples
  every thread's stack every 10 ms under the GIL, and a training loop is Python-heavy —
  a batch-32 fit ran 8–20 % faster without it in three alternated comparisons of 10–20
  rounds. Their event loop's tick (every 20 ms), system monitor
  (0.5 s) and memory monitor (0.1 s) run less often (1 s, 5 s, 1 s): the same fit ran
  5–13 % faster again (medians of three alternated comparisons of 8–20 rounds, with
  the profiler off in both). For a cluster of your own, set the same keys in the
  workers' Dask configuration (docs/scaling.md lists them as environment variables).

The processes a sweep starts itself — the pool's and the LocalCluster's workers — are set
up by [`prepare_worker`][bayesguide.sweeps.point.prepare_worker] (the pool's initializer, a
Dask worker plugin): the sweep waits for them to end, and without it each spent 2 s of
that in the interpreter's last garbage collections.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from types import TracebackType
from typing import Any

from bayesguide.process import worker_context
from bayesguide.sweeps.point import PointTask, prepare_worker, run_point
from bayesguide.sweeps.spec import SweepSettings

__all__ = ["DaskExecutor", "Executor", "LocalExecutor", "SerialExecutor", "WorkerLost", "make_executor"]

Outcome = tuple[PointTask, "dict[str, Any] | WorkerLost"]

PROFILER_OFF = {"distributed.worker.profile.enabled": False}
"""The Dask workers' statistical profiler off (the module docstring says why)."""

QUIET_WORKERS = {**PROFILER_OFF, "distributed.admin.tick.interval": "1s",
                 "distributed.admin.system-monitor.interval": "5s",
                 "distributed.worker.memory.monitor-interval": "1s"}
"""The Dask configuration of the LocalCluster's workers (the module docstring says why)."""


class WorkerLost(Exception):
    """The process running a point died before it returned (the message says how)."""


class Executor(ABC):
    """Runs points and hands back their outcomes as they finish."""

    name: str = ""

    def __init__(self, settings: SweepSettings) -> None:
        self.settings = settings

    @abstractmethod
    def submit(self, task: PointTask) -> None:
        """Queue ``task``."""

    @abstractmethod
    def completed(self) -> Iterator[Outcome]:
        """``(task, summary or WorkerLost)`` as points finish, until none is queued."""

    def close(self) -> None:
        """Stop the workers (queued points are dropped); nothing to stop by default."""
        return None

    def describe(self) -> dict[str, Any]:
        """What ``sweep.json`` records of the executor."""
        s = self.settings
        return {"name": self.name, "workers": s.n_workers if self.name != "serial" else 1,
                "scheduler": s.scheduler or None, "threads": s.threads, "retries": s.retries}

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class SerialExecutor(Executor):
    """Every point in this process, in submission order."""

    name = "serial"

    def __init__(self, settings: SweepSettings) -> None:
        super().__init__(settings)
        self._queue: list[PointTask] = []

    def submit(self, task: PointTask) -> None:
        self._queue.append(task)

    def completed(self) -> Iterator[Outcome]:
        while self._queue:
            task = self._queue.pop(0)
            yield task, run_point(task)


_LOST_HINT = ("killed, out of memory, or, when every point is lost at once, started from a script that "
              "does not guard its bg.sweep call with `if __name__ == \"__main__\":` (each worker imports "
              "the script)")


class LocalExecutor(Executor):
    """A `ProcessPoolExecutor` of ``workers`` processes from [`worker_context`][bayesguide.process.worker_context]."""

    name = "local"

    def __init__(self, settings: SweepSettings) -> None:
        super().__init__(settings)
        self._context = worker_context()
        self._pool: cf.ProcessPoolExecutor | None = None
        self._futures: dict[cf.Future[dict[str, Any]], PointTask] = {}

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(self.settings.n_workers, mp_context=self._context, initializer=prepare_worker)

    def submit(self, task: PointTask) -> None:
        if self._pool is None:
            self._pool = self._new_pool()
        try:
            future = self._pool.submit(run_point, task)
        except cf.BrokenExecutor:  # a worker died: the pool is unusable, start another
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
            future = self._pool.submit(run_point, task)
        self._futures[future] = task

    def completed(self) -> Iterator[Outcome]:
        while self._futures:
            done, _ = cf.wait(list(self._futures), return_when=cf.FIRST_COMPLETED)
            for future in done:
                task = self._futures.pop(future)
                try:
                    yield task, future.result()
                except cf.BrokenExecutor as err:  # every point in flight on the broken pool
                    yield task, WorkerLost(f"a worker process of the local pool died ({err}); {_LOST_HINT}")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class DaskExecutor(Executor):
    """A ``distributed`` client: a running scheduler's address, or a LocalCluster started here."""

    name = "dask"

    def __init__(self, settings: SweepSettings) -> None:
        super().__init__(settings)
        try:
            import dask.config  # the optional dependency, imported only for this executor
            import distributed

            from bayesguide.sweeps.dask_plugin import PrepareWorker  # subclasses distributed's WorkerPlugin
        except ImportError as err:
            raise RuntimeError("the dask executor needs the distributed package: "
                               "pip install -c constraints.txt -e \".[dask]\"") from err
        self._distributed = distributed
        self._cluster: Any = None
        if settings.scheduler == "local":
            method = {"distributed.worker.multiprocessing-method": worker_context(("distributed",)).get_start_method()}
            with dask.config.set({**QUIET_WORKERS, **method}):  # the nannies hand this to their workers
                self._cluster = distributed.LocalCluster(
                    n_workers=settings.n_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                    dashboard_address=None, silence_logs=logging.ERROR)
            address = self._cluster.scheduler_address
        else:
            address = settings.scheduler
        try:
            self.client = distributed.Client(address, timeout="20s")
        except (OSError, TimeoutError) as err:
            self.close()
            raise ConnectionError(f"cannot reach the Dask scheduler at {address}: {err}") from err
        if self._cluster is not None:  # our own workers: set up like the local pool's (a user's cluster is theirs)
            self.client.register_plugin(PrepareWorker())
        self._ac = distributed.as_completed()
        self._tasks: dict[Any, PointTask] = {}

    def submit(self, task: PointTask) -> None:
        key = f"bayesguide-point-{task.name}-{uuid.uuid4().hex[:8]}"
        future = self.client.submit(run_point, task, key=key, pure=False)
        self._tasks[future.key] = task
        self._ac.add(future)

    def completed(self) -> Iterator[Outcome]:
        for future in self._ac:
            task = self._tasks.pop(future.key)
            try:
                yield task, future.result()
            except Exception as err:  # KilledWorker, a lost connection: the point did not finish
                yield task, WorkerLost(f"{type(err).__name__}: {err}")

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["workers"] = len(self.client.scheduler_info().get("workers", {}))
        return info

    def close(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            client.close()
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None


def make_executor(settings: SweepSettings) -> Executor:
    """The executor ``settings`` name (a scheduler address means Dask)."""
    kinds: dict[str, type[Executor]] = {"serial": SerialExecutor, "local": LocalExecutor, "dask": DaskExecutor}
    if settings.engine == "dask" and not settings.scheduler:
        settings = SweepSettings(**{**settings.__dict__, "scheduler": "local"})
    return kinds[settings.engine](settings)
