"""The sequential executor: stages run one at a time in this process.

The planner's opened datasets and the progress bars are shared with the stages, and loaded
artifacts stay in memory between stages.
"""

from __future__ import annotations

import time

from hashbench.harness.executors.worker import StageResult, StageWorker, WorkerConfig
from hashbench.harness.stages.spec import Stage
from hashbench.progress import Reporter


class InlineExecutor:
    """Runs each submitted stage at once; :meth:`wait` hands the results back."""

    slots = 1

    def __init__(self, config: WorkerConfig, *, datasets: dict | None = None, reporter: Reporter | None = None) -> None:
        self.worker = StageWorker(config, datasets=datasets, reporter=reporter)
        self._results: list[StageResult] = []

    def submit(self, stage: Stage) -> None:
        self._results.append(self.worker.run(stage))

    def wait(self, timeout: float | None) -> list[StageResult]:
        if not self._results and timeout:
            time.sleep(timeout)
        out, self._results = self._results, []
        return out

    def abort(self) -> None:
        """Nothing to stop: the interrupted stage ran in this process and has unwound."""

    def close(self) -> None:
        pass
