"""``--executor ray``: the same stages as Ray tasks, on a local Ray instance or a cluster.

The artifact store must be on a filesystem every node sees (the results folder is passed as
an absolute path).  Where the cluster has GPUs, each stage that runs a network (train,
defend, prepare, attack, encode) asks Ray for one GPU; splits and evaluations run on CPU.
``--device cpu`` keeps every stage on CPU.  Ray is an optional dependency:
``pip install -e ".[ray]"``.
"""

from __future__ import annotations

from typing import Any

import torch

from hashbench.errors import UserError
from hashbench.harness.executors.worker import StageResult, StageWorker, WorkerConfig
from hashbench.harness.stages.kinds import KINDS
from hashbench.harness.stages.spec import Stage

#: one StageWorker per (config, device) in each Ray worker process, kept between tasks
_WORKERS: dict[tuple[WorkerConfig, str], StageWorker] = {}


def _run_stage(config: WorkerConfig, stage: Stage, gpu: bool) -> StageResult:
    device = torch.device("cuda") if gpu and torch.cuda.is_available() else torch.device("cpu")
    worker = _WORKERS.get((config, device.type))
    if worker is None:
        worker = _WORKERS[(config, device.type)] = StageWorker(config, device=device)
    return worker.run(stage)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError('--executor ray needs Ray: pip install -e ".[ray]" (or pip install ray)') from None
    return ray


class RayExecutor:
    """Submits each ready stage as a Ray task; as many in flight as the cluster has CPUs."""

    def __init__(self, config: WorkerConfig, address: str | None = None, *, num_cpus: int | None = None) -> None:
        ray = self._ray = _import_ray()
        self._started = not ray.is_initialized()
        if self._started:
            kwargs: dict[str, Any] = {"address": address, "include_dashboard": False, "log_to_driver": False,
                                      "configure_logging": False}
            if address is None and num_cpus is not None:
                kwargs["num_cpus"] = num_cpus
            try:
                ray.init(**kwargs)
            except ConnectionError as exc:
                raise UserError(f"--address {address}: cannot connect to a Ray cluster ({exc})") from None
        resources = ray.cluster_resources()
        self.gpus = int(resources.get("GPU", 0)) if config.device != "cpu" else 0
        if config.device.startswith("cuda") and not self.gpus:
            if self._started:
                ray.shutdown()
            raise UserError("--device cuda: the Ray cluster has no GPUs (use --device auto or cpu)")
        self.slots = max(1, int(resources.get("CPU", 1)))
        self.config = config
        self._remote = ray.remote(_run_stage)
        self._refs: dict[Any, Stage] = {}

    def submit(self, stage: Stage) -> None:
        gpu = self.gpus > 0 and KINDS[stage.kind].gpu
        ref = self._remote.options(num_cpus=1, num_gpus=1 if gpu else 0, max_retries=0).remote(self.config, stage, gpu)
        self._refs[ref] = stage

    def wait(self, timeout: float | None) -> list[StageResult]:
        if not self._refs:
            return []
        ready, _ = self._ray.wait(list(self._refs), num_returns=1, timeout=timeout)
        out = []
        for ref in ready:
            stage = self._refs.pop(ref)
            try:
                out.append(self._ray.get(ref))
            except self._ray.exceptions.WorkerCrashedError as exc:
                out.append(StageResult(stage.key, stage.kind, "lost", error=f"Ray worker died ({exc})"))
            except self._ray.exceptions.RayError as exc:
                out.append(StageResult(stage.key, stage.kind, "failed", error=f"{type(exc).__name__}: {exc}"))
        return out

    def abort(self) -> None:
        """Cancel the stages in flight (Ray kills their worker processes)."""
        self.close()

    def close(self) -> None:
        for ref in list(self._refs):
            self._ray.cancel(ref, force=True)
        self._refs.clear()
        if self._started:
            self._ray.shutdown()
