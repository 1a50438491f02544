"""The Dask worker plugin of the LocalCluster a sweep starts (imported only with ``distributed``)."""

from __future__ import annotations

from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from bayesguide.sweeps.point import prepare_worker

__all__ = ["PrepareWorker"]


class PrepareWorker(WorkerPlugin):
    """[`prepare_worker`][bayesguide.sweeps.point.prepare_worker] in every worker, restarted ones too."""

    name = "bayesguide-prepare-worker"

    def setup(self, worker: Any) -> None:
        prepare_worker()
