"""``--workers N``: independent stages run in N local processes.

Each worker process gets ``max(1, cores // N)`` torch threads, so N workers do not
oversubscribe the CPU.  Workers start from a fork server that has imported hashbench and
torch once (where the platform has one; otherwise they are spawned), never by forking a
process whose OpenMP threads are running.  A worker that dies (killed, out of memory) breaks
the pool: its stages come back as ``lost`` and a fresh pool takes over.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

import torch

from ..plan import Stage
from ..store import StoreWriteError
from .worker import StageResult, StageWorker, WorkerConfig

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
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    _WORKER = StageWorker(config)


def _run(stage: Stage) -> StageResult:
    assert _WORKER is not None, "worker process not initialised"
    return _WORKER.run(stage)


def _context() -> multiprocessing.context.BaseContext:
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["hashbench.executors.parallel"])
        return ctx
    return multiprocessing.get_context("spawn")


class PoolExecutor:
    """N worker processes; at most N stages in flight."""

    def __init__(self, config: WorkerConfig, workers: int) -> None:
        if config.threads is None:
            config = WorkerConfig(config.store_root, config.device, config.channels_last, threads_per_worker(workers))
        self.config = config
        self.slots = workers
        self._pool = self._new_pool()
        self._futures: dict[Future, Stage] = {}

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.slots, mp_context=_context(), initializer=_init, initargs=(self.config,))

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
