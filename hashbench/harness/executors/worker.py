"""Run one stage against a shared store: lock, check, execute, measure, save.

The artifact's lock (:meth:`ArtifactStore.lock`) is tried without waiting: if another process
holds it, the stage is reported ``busy`` and the coordinator does other work and comes back.
Whoever holds the lock checks the store again (another run may have finished the stage),
clears what a killed writer left behind, and runs the stage.  A stage's exception is its
result (``failed``), never the process's; an input missing from the store (deleted, or found
corrupt) is reported so the coordinator recomputes it.

Peak memory is measured per stage: resident set size by resetting the kernel's high-water
mark (``/proc/self/clear_refs``; elsewhere the process's lifetime peak) and, on CUDA,
``torch.cuda.max_memory_allocated`` after a reset.

``HASHBENCH_CRASH_AFTER=N`` (tests only) makes the process SIGKILL itself after it has stored
its N-th stage; ``N:writing`` kills it in the middle of writing the N-th artifact instead.
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch
from filelock import Timeout

from hashbench.errors import HashbenchError, UserError
from hashbench.harness.determinism import use_deterministic_kernels
from hashbench.harness.executors.cache import ArtifactCache
from hashbench.harness.sizes import dataset_sizes
from hashbench.harness.stages.context import StageContext
from hashbench.harness.stages.kinds import KINDS
from hashbench.harness.stages.spec import Stage, split_stage
from hashbench.harness.store import Artifact, ArtifactStore, stored_bytes, write_failure
from hashbench.harness.timings import record_timing
from hashbench.progress import Reporter

CRASH_ENV = "HASHBENCH_CRASH_AFTER"


def resolve_device(name: str | torch.device) -> torch.device:
    """``auto`` → CUDA when present, else CPU; ``cuda`` without a GPU is a user error."""
    name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available (use --device cpu or auto)")
    if name != "cpu" and not name.startswith("cuda"):
        raise UserError(f"--device: unknown device '{name}' (allowed: auto, cpu, cuda)")
    return torch.device(name)


@dataclass(frozen=True)
class WorkerConfig:
    """What a worker process needs to run stages (picklable: it crosses process boundaries)."""

    store_root: str
    device: str = "auto"
    channels_last: bool = False
    #: torch intra-op threads of a worker process; ``None`` keeps the process's setting
    threads: int | None = None
    #: tensor bytes of artifacts a worker keeps in memory for later stages (:class:`ArtifactCache`)
    cache_mb: int = 2048


@dataclass
class StageResult:
    """What became of one stage: ``done`` (run here), ``cached`` (found in the store), ``busy``
    (another process holds its lock), ``failed``, ``missing`` (an input is not in the store) or
    ``lost`` (the process running it died)."""

    key: str
    kind: str
    status: str
    error: str | None = None
    traceback: str | None = None
    missing: tuple[str, ...] = ()
    wall_s: float | None = None
    peak_rss_mb: float | None = None
    peak_gpu_mb: float | None = None
    device: str | None = None
    worker: str = ""


class MissingInput(HashbenchError):
    """An input artifact is not in the store (never computed, deleted, or removed as corrupt)."""

    def __init__(self, stage: Stage) -> None:
        super().__init__(f"input {stage.kind} {stage.key[:12]} is not in the store")
        self.stage = stage


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM, the peak resident set size
    except OSError:
        pass


def peak_memory(device: torch.device) -> tuple[float, float | None]:
    """(peak RSS in MiB since :func:`reset_peak_memory`, peak CUDA memory allocated in MiB or None)."""
    rss = None
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    rss = int(line.split()[1]) / 1024
                    break
    except OSError:
        pass
    if rss is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        rss = peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB elsewhere
    gpu = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return rss, gpu


def _crash_plan() -> tuple[int, str] | None:
    value = os.environ.get(CRASH_ENV)
    if not value:
        return None
    count, _, phase = value.partition(":")
    return int(count), phase or "saved"


def _die(*_args: object) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class StageWorker:
    """Runs stages in this process, reading inputs from (and writing outputs to) the store."""

    def __init__(self, config: WorkerConfig, *, datasets: dict | None = None, reporter: Reporter | None = None,
                 device: torch.device | None = None) -> None:
        use_deterministic_kernels()
        if config.threads is not None:
            torch.set_num_threads(config.threads)
        self.config = config
        self.store = ArtifactStore(config.store_root)
        self.device = device or resolve_device(config.device)
        self.cache = ArtifactCache(config.cache_mb * 2**20)
        self.ctx = StageContext(device=self.device, reporter=reporter or Reporter(), artifact=self._artifact,
                                datasets=datasets if datasets is not None else {},
                                channels_last=config.channels_last)
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self._stored = 0
        self._crash = _crash_plan()

    # -- inputs ------------------------------------------------------------------------
    def _artifact(self, stage: Stage) -> Artifact:
        art = self.cache.get(stage.key)
        if art is not None:
            return art
        art = self.store.load_verified(stage.kind, stage.key)
        if art is None:
            raise MissingInput(stage)
        self.cache.put(stage.key, art)
        return art

    # -- one stage -----------------------------------------------------------------------
    def run(self, stage: Stage) -> StageResult:
        lock = self.store.lock(stage.key)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return self._result(stage, "busy")
        try:
            if self.store.exists(stage.kind, stage.key):
                return self._result(stage, "cached")
            self.store.remove_partial(stage.kind, stage.key)
            return self._execute(stage)
        finally:
            lock.release()

    def _result(self, stage: Stage, status: str, **fields) -> StageResult:
        return StageResult(stage.key, stage.kind, status, device=str(self.device), worker=self.name, **fields)

    def _execute(self, stage: Stage) -> StageResult:
        reset_peak_memory(self.device)
        start = time.perf_counter()
        try:
            art = KINDS[stage.kind].run(self.ctx, stage)
        except MissingInput as exc:
            return self._result(stage, "missing", missing=(exc.stage.key,), error=str(exc))
        except Exception as exc:  # a broken plugin or a diverged run fails its cells, not the run
            return self._result(stage, "failed", error=f"{type(exc).__name__}: {exc}",
                                traceback="".join(traceback.format_exception(exc, limit=-6)))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        wall = time.perf_counter() - start
        rss, gpu = peak_memory(self.device)
        art.meta.setdefault("wall_s", wall)
        art.meta.update(device=str(self.device), stage_wall_s=wall, peak_rss_mb=rss, peak_gpu_mb=gpu)
        number = self._stored + 1
        if self._crash == (number, "writing"):
            self.store.before_commit = _die
        try:
            self.store.save(stage.kind, stage.key, art)
        except OSError as exc:
            raise write_failure(f"the artifact of the {stage.kind} stage ({stage.label})", exc, needed=stored_bytes(art),
                                where=self.store.path(stage.kind, stage.key)) from exc
        if not KINDS[stage.kind].sink:
            self.cache.put(stage.key, art)
        try:
            record_timing(self.store, stage, wall, self.device, flops=self._flops(stage), peak_rss_mb=rss,
                          peak_gpu_mb=gpu)
        except OSError as exc:
            raise write_failure(f"the timing of the {stage.kind} stage ({stage.label})", exc) from exc
        self._stored = number
        if self._crash == (number, "saved"):
            _die()
        return self._result(stage, "done", wall_s=wall, peak_rss_mb=rss, peak_gpu_mb=gpu)

    def _flops(self, stage: Stage) -> int | None:
        """The stage's model FLOPs, for the cost estimates of later plans (never fails the stage)."""
        try:
            split = split_stage(stage)
            sizes = dataset_sizes(self.ctx.dataset(split.spec.dataset), split.spec.split)
            return KINDS[stage.kind].flops(stage, sizes)
        except Exception:
            return None


def store_root(results_dir: str | Path) -> str:
    """The absolute store path of a results folder (workers may run elsewhere)."""
    return str((Path(results_dir) / "store").resolve())
