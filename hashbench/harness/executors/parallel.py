"""``--workers N``: independent stages run in N local processes.

Each worker process gets ``max(1, cores // N)`` torch threads, so N workers do not
oversubscribe the CPU (two OpenMP threads per worker on two cores made the smoke grid 7× slower).
Workers start from a fork server (:mod:`.processes`).  Each worker has up to
:data:`QUEUED_PER_WORKER` stages submitted, so it starts its next stage while the coordinator
handles the last one.  A worker that dies (killed, out of memory) breaks the pool: its stages
come back as ``lost`` and a fresh pool takes over.

Stopping: :meth:`PoolExecutor.abort` (the run was interrupted) sends each worker SIGTERM, which
unwinds the stage it runs (its partial write is removed, its lock released) and ends the
process; one still alive after :data:`ABORT_GRACE_S` is killed.  Workers ignore SIGINT (Ctrl-C
reaches the whole process group; the coordinator decides), and each watches the coordinator
process: when it ends, however it ends (even SIGKILL), the worker stops itself the same way.
Nothing is left behind, and the fork server, which lives while any worker does, exits too.
"""

from __future__ import annotations

import os
import select
import signal
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace

from hashbench.harness.executors.processes import worker_context
from hashbench.harness.executors.worker import StageResult, StageWorker, WorkerConfig
from hashbench.harness.stages.spec import Stage
from hashbench.harness.store import StoreWriteError

#: stages handed to the pool per worker: one running, one waiting in the pool's queue
QUEUED_PER_WORKER = 2
#: seconds a stopped worker has to unwind its stage before it is killed
ABORT_GRACE_S = 5.0

_WORKER: StageWorker | None = None
_BUSY = False  # this worker process is running a stage


class WorkerStopped(BaseException):
    """Raised in a worker by SIGTERM or SIGHUP while it runs a stage: unwinds it (removing partial
    writes, releasing locks) before the process ends.  A BaseException, so no ``except Exception``
    in a stage or a plugin swallows it."""


def cpu_cores() -> int:
    """Cores this process may run on (the affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def threads_per_worker(workers: int) -> int:
    return max(1, cpu_cores() // workers)


def _stop(signum: int, frame: object) -> None:
    if _BUSY:
        raise WorkerStopped(signum)
    os._exit(0)  # idle: nothing to clean up


def watch_coordinator(pid: int) -> None:
    """Stop this process (as SIGTERM does) when process ``pid`` ends, however it ends.

    Uses a pidfd where the platform has one (Linux ≥ 5.3), else polls every half second.  If the
    stage does not unwind within :data:`ABORT_GRACE_S`, the process exits anyway.
    """

    def watch() -> None:
        try:
            fd = os.pidfd_open(pid)
        except (AttributeError, OSError):  # no pidfd here, or the process is already gone
            fd = None
        if fd is not None:
            select.select([fd], [], [])  # readable once the process has ended
        else:
            while _alive(pid):
                time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(ABORT_GRACE_S)
        os._exit(1)

    threading.Thread(target=watch, name="hashbench-watch-coordinator", daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _init(config: WorkerConfig, coordinator: int) -> None:
    global _WORKER
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the coordinator stops the workers
    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _stop)
    watch_coordinator(coordinator)
    _WORKER = StageWorker(config)


def _run(stage: Stage) -> StageResult:
    global _BUSY
    assert _WORKER is not None, "worker process not initialised"
    _BUSY = True
    try:
        return _WORKER.run(stage)
    except WorkerStopped:
        os._exit(0)  # the stage has unwound: its partial files are gone, its lock released
    finally:
        _BUSY = False


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
        return ProcessPoolExecutor(self.workers, mp_context=worker_context(), initializer=_init,
                                   initargs=(self.config, os.getpid()))

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

    def abort(self) -> None:
        """Stop now: stages running are interrupted (their partial writes removed), queued ones dropped."""
        # concurrent.futures has no public way to stop running tasks (Python 3.14 adds terminate_workers)
        processes = list((getattr(self._pool, "_processes", None) or {}).values())
        for process in processes:
            if process.is_alive():
                process.terminate()
        deadline = time.monotonic() + ABORT_GRACE_S
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join(1.0)
        self._futures.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
