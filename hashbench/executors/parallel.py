"""``--workers N``: independent stages run in N local processes.

Each worker process gets ``max(1, cores // N)`` torch threads, so N workers do not
oversubscribe the CPU (two OpenMP threads per worker on two cores made the smoke grid 7× slower).
Workers start from a fork server (:mod:`.processes`).  Each worker has up to
:data:`QUEUED_PER_WORKER` stages submitted, so it starts its next stage while the coordinator
handles the last one.  A worker that dies (killed, out of memory) breaks the pool: its stages
come back as ``lost`` and a fresh pool takes over.
"""

from __future__ import annotations

import os
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace

from ..plan import Stage
from ..store import StoreWriteError
from .processes import worker_context
from .worker import StageResult, StageWorker, WorkerConfig

#: stages handed to the pool per worker: one running, one waiting in the pool's queue
QUEUED_PER_WORKER = 2

_WORKER: StageWorker | None = None


def cpu_cores() -> int:
    """Cores this process may run on (the affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def threads_per_worker(workers: int) -> int:
    return max(1, cpu_cores() // workers)


def _init(config: WorkerConfig) -> None:
    global _WORKER
    _WORKER = StageWorker(config)


def _run(stage: Stage) -> StageResult:
    assert _WORKER is not None, "worker process not initialised"
    return _WORKER.run(stage)


class PoolExecutor:
    """N worker processes; at most ``QUEUED_PER_WORKER × N`` stages in flight."""

    def __init__(self, config: WorkerConfig, workers: int) -> None:
        if config.threads is None:
            config = replace(config, threads=threads_per_worker(workers))
        self.config = config
        self.workers = workers
        self.slots = workers * QUEUED_PER_WORKER
        self._pool = self._new_pool()
        self._futures: dict[Future, Stage] = {}

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.workers, mp_context=worker_context(), initializer=_init, initargs=(self.config,))

    def submit(self, stage: Stage) -> None:
        try:
            future = self._pool.submit(_run, stage)
        except BrokenProcessPool:
            self._pool = self._new_pool()
            future = self._pool.submit(_run, stage)
        self._futures[future] = stage

    def wait(self, timeout: float | None) -> list[StageResult]:
        if not self._futures:
            return []
        done, _ = wait(list(self._futures), timeout=timeout, return_when=FIRST_COMPLETED)
        out = []
        broken = False
        for future in done:
            stage = self._futures.pop(future)
            try:
                out.append(future.result())
            except BrokenProcessPool as exc:
                broken = True
                out.append(StageResult(stage.key, stage.kind, "lost", error=f"worker process died ({exc})"))
            except StoreWriteError:
                raise  # disk full: every later stage would fail the same way, so the run stops
            except Exception as exc:  # the stage's result could not come back (e.g. unpicklable)
                out.append(StageResult(stage.key, stage.kind, "failed", error=f"{type(exc).__name__}: {exc}"))
        if broken:  # every stage still in the dead pool is lost too; a fresh pool takes over
            for future, stage in self._futures.items():
                out.append(StageResult(stage.key, stage.kind, "lost", error="worker pool broke while it ran"))
            self._futures.clear()
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
        return out

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
