"""Sweeps on real engines: a process pool and a Dask LocalCluster (2 workers, loopback)
give the serial executor's numbers; a worker killed mid-point (its PID, from the test)
costs only a retry; two invocations of one sweep at once never run a point twice."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import bayesguide as bg
from bayesguide.results import load_results
from bayesguide.runner import LOCK_FILE

distributed = pytest.importorskip("distributed")

# distributed's own housekeeping: sockets closed by the garbage collector, a dashboard port taken by a
# cluster of another test (no dashboard is asked for; distributed still probes the default port)
pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning",
                                        "ignore:Port 8787 is already in use:UserWarning")

#: what must agree between executors, point by point
_KEYS = ("best", "units", "n_params", "log_evidence", "posterior_prob", "train_metric", "test_metric",
         "full_test_metric")


def _numbers(points: list[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    return {p["name"]: tuple(p[k] for k in _KEYS) for p in points}


def _same(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> None:
    x, y = _numbers(a), _numbers(b)
    assert x.keys() == y.keys()
    for name in x:
        for key, u, v in zip(_KEYS, x[name], y[name]):
            if isinstance(u, float):
                assert v == pytest.approx(u, rel=1e-6, abs=1e-6), (name, key)
            else:
                assert u == v, (name, key)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, silence_logs=logging.ERROR) as c:
        yield c


def _killer(root: Path, killed: list[int], after: float = 0.0) -> threading.Thread:
    """A thread that SIGKILLs the first worker it finds holding a point's run-directory lock."""

    def run() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            for lock in root.glob(f"points/*/{LOCK_FILE}"):
                try:
                    pid = int(lock.read_text())
                except (OSError, ValueError):
                    continue
                if pid != os.getpid():
                    time.sleep(after)
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
            time.sleep(0.02)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.slow
def test_local_pool_and_dask_give_the_serial_numbers(sweep_file: Callable[..., Path], tmp_path: Path,
                                                     cluster: Any) -> None:
    path = sweep_file(tmp_path)
    serial = bg.sweep(path, dir=tmp_path / "serial", progress=False)
    local = bg.sweep(path, dir=tmp_path / "local", executor="local", workers=2, progress=False)
    dask = bg.sweep(path, dir=tmp_path / "dask", scheduler=cluster.scheduler_address, progress=False)
    assert serial.complete and local.complete and dask.complete
    _same(serial.points, local.points)
    _same(serial.points, dask.points)
    assert dask.document["executor"]["name"] == "dask" and dask.document["executor"]["workers"] == 2
    assert len({p["worker"] for p in dask.points}) == 2  # both workers took points
    assert local.document["executor"] == {"name": "local", "workers": 2, "scheduler": None, "threads": 1,
                                          "retries": 2}


@pytest.mark.slow
def test_dask_local_cluster_from_the_settings(sweep_file: Callable[..., Path], tmp_path: Path) -> None:
    res = bg.sweep(sweep_file(tmp_path, grid='"fit.seed" = [0, 1]'), scheduler="local", workers=2, progress=False)
    serial = bg.sweep(tmp_path / "sweep.toml", dir=tmp_path / "serial", progress=False)
    assert res.complete and res.document["executor"]["scheduler"] == "local"
    _same(serial.points, res.points)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["dask", "local"])
def test_a_killed_worker_loses_only_its_point_which_is_retried(
        sweep_file: Callable[..., Path], tmp_path: Path, cluster: Any, engine: str) -> None:
    path = sweep_file(tmp_path, steps=2500)
    killed: list[int] = []
    killer = _killer(tmp_path / "out", killed, after=0.3)
    options: dict[str, Any] = ({"scheduler": cluster.scheduler_address} if engine == "dask"
                               else {"executor": "local", "workers": 2})
    res = bg.sweep(path, progress=False, **options)
    killer.join(1)
    assert len(killed) == 1
    assert res.complete, [(p["name"], p["status"], p["error"]) for p in res.points]
    # every point is complete on disk, and its numbers equal an undisturbed serial run
    serial = bg.sweep(path, dir=tmp_path / "serial", progress=False)
    _same(serial.points, res.points)
    if engine == "local":  # the broken pool's points in flight were submitted again
        assert max(p["attempts"] for p in res.points) >= 2


@pytest.mark.slow
def test_two_invocations_at_once_never_run_a_point_twice(sweep_file: Callable[..., Path], tmp_path: Path) -> None:
    path = sweep_file(tmp_path, steps=1500)
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "bayesguide.cli", "sweep", str(path), "--executor", "serial", "--quiet"]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode in (0, 1) for p in procs), outputs

    def fits() -> dict[str, int]:
        """How many fits each point's log records."""
        return {log.parent.name: sum(line.split(" ", 1)[1].startswith("fit    fit_")
                                     for line in log.read_text().splitlines())
                for log in (tmp_path / "out" / "points").glob("*/sweep-point.log")}

    assert sorted(fits()) == ["strength=0.5,seed=0", "strength=0.5,seed=1", "strength=2.0,seed=0",
                            "strength=2.0,seed=1"]
    assert set(fits().values()) == {1}, fits()  # every point was fitted exactly once
    # what one invocation found busy, the other finished: a third run has nothing to do
    res = bg.sweep(path, progress=False)
    assert res.complete and all(load_results(tmp_path / "out" / p["dir"])["status"] == "complete"
                                for p in res.points)
    assert set(fits().values()) == {1}


_QUIET_KEYS = ("distributed.worker.profile.enabled", "distributed.admin.tick.interval",
               "distributed.admin.system-monitor.interval", "distributed.worker.memory.monitor-interval")


def _worker_config() -> tuple[Any, ...]:
    import dask.config

    return tuple(dask.config.get(key) for key in _QUIET_KEYS)


def _prepared() -> bool:
    from bayesguide import process

    return process._REGISTERED


def _worker_state() -> tuple[tuple[Any, ...], bool]:
    return _worker_config(), _prepared()


@pytest.mark.slow
def test_the_local_cluster_workers_run_quietly_and_are_prepared() -> None:
    """No statistical profiler, a slow tick and slow monitors in the LocalCluster's workers, which
    freeze the collector at exit; this process's configuration is untouched."""
    import dask.config

    from bayesguide.sweeps import SweepSettings, make_executor

    before = _worker_config()
    executor = make_executor(SweepSettings(scheduler="local", workers=1))
    try:
        answers = executor.client.run(_worker_state)
    finally:
        executor.close()
    assert list(answers.values()) == [((False, "1s", "5s", "1s"), True)]
    assert _worker_config() == before and before[0] is not False
    assert dask.config.get("distributed.admin.tick.interval") != "1s"


def test_the_pool_prepares_its_workers_and_not_this_process() -> None:
    from bayesguide.sweeps import SweepSettings, make_executor

    executor = make_executor(SweepSettings(executor="local", workers=1))
    try:
        executor._pool = executor._new_pool()
        assert executor._pool.submit(_prepared).result(timeout=120) is True
    finally:
        executor.close()
    assert _prepared() is False


def test_the_pool_workers_start_with_their_modules_imported_by_a_fresh_server() -> None:
    import concurrent.futures as cf

    from bayesguide.process import WORKER_MODULES, worker_context

    context = worker_context()
    assert context.get_start_method() == "forkserver"  # on POSIX; spawn where there is no fork server
    probe = f"[m for m in __import__('sys').modules if m in {WORKER_MODULES!r}], __import__('os').getppid()"
    with cf.ProcessPoolExecutor(1, mp_context=context) as pool:
        # a builtin as the task: unpickling it imports nothing, so what is there came with the fork
        imported, parent = pool.submit(eval, probe).result(timeout=120)
    assert sorted(imported) == sorted(WORKER_MODULES)
    assert parent != os.getpid()  # a fork of the server, not of this process


def test_dask_without_distributed_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from bayesguide.sweeps import SweepSettings, make_executor

    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed now raises ImportError
    with pytest.raises(RuntimeError, match=r"the dask executor needs the distributed package: pip install"):
        make_executor(SweepSettings(scheduler="local"))


@pytest.mark.slow
def test_an_unreachable_scheduler_is_named(sweep_file: Callable[..., Path], tmp_path: Path) -> None:
    with pytest.raises(ConnectionError, match=r"cannot reach the Dask scheduler at tcp://127\.0\.0\.1:9"):
        bg.sweep(sweep_file(tmp_path), scheduler="tcp://127.0.0.1:9", progress=False)


@pytest.mark.slow
def test_a_script_without_a_main_guard_is_told_why_its_points_are_lost(sweep_file: Callable[..., Path],
                                                                        tmp_path: Path) -> None:
    path = sweep_file(tmp_path, grid='"fit.seed" = [0]', settings="retries = 0")
    script = tmp_path / "unguarded.py"
    script.write_text(f"import bayesguide as bg\nbg.sweep({str(path)!r}, executor='local', workers=1, "
                      "progress=False)\n")
    subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, timeout=300, check=False)
    (point,) = json.loads((tmp_path / "out" / "sweep.json").read_text())["points"]
    assert point["status"] == "failed"
    assert "worker lost" in point["error"] and 'if __name__ == "__main__":' in point["error"]
