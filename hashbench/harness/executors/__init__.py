"""Where stages run: in this process, in a pool of local processes, or as Ray tasks.

Every executor runs a stage through the same :class:`~hashbench.harness.executors.worker.StageWorker`
(lock the artifact, skip it if another process made it, run it, measure it, store it), so
the three produce the same artifacts and records.  The coordinator
(:class:`hashbench.harness.runner.Runner`) decides what is ready; an executor only runs it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["StageResult", "StageWorker", "WorkerConfig", "resolve_device"]


def __getattr__(name: str) -> Any:
    # lazy, so that importing :mod:`.processes` (which starts the fork server) does not import torch
    if name in __all__:
        from hashbench.harness.executors import worker

        return getattr(worker, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
