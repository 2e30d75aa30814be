"""What the runner needs of an executor: local (in this process), pool (local processes) or Ray."""

from __future__ import annotations

from typing import Protocol

from hashbench.harness.executors.worker import StageResult
from hashbench.harness.stages.spec import Stage


class Executor(Protocol):
    """Runs the stages the runner submits and hands back their results; it decides nothing."""

    #: stages that may be in flight at once
    slots: int

    def submit(self, stage: Stage) -> None:
        """Start ``stage`` (its inputs are in the store)."""

    def wait(self, timeout: float | None) -> list[StageResult]:
        """The results of stages that ended, waiting up to ``timeout`` seconds for one."""

    def abort(self) -> None:
        """Stop the stages in flight (an interrupt): nothing is written after it returns."""

    def close(self) -> None:
        """Release the workers."""
