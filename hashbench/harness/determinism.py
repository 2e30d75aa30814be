"""Deterministic kernels for every process that runs stages (the CLI's, pool workers, Ray tasks).

Same config and seed give the same numbers on the same machine only if torch picks deterministic
kernels, so :class:`~hashbench.harness.executors.worker.StageWorker` calls :func:`use_deterministic_kernels`
in whichever process it is created.
"""

from __future__ import annotations

import os
import sys

import torch

#: cuBLAS needs a fixed workspace for deterministic matrix products (must be set before its first use)
CUBLAS_WORKSPACE = ":4096:8"


def use_deterministic_kernels() -> None:
    """Make torch choose deterministic kernels (warning, not failing, where an op has none).

    ``torch.use_deterministic_algorithms`` also sets TorchInductor's flag, and to do so imports
    ``torch._inductor`` and with it TorchDynamo: 3–7 s of start-up in every process.  hashbench
    never compiles, so unless Inductor is already loaded only the kernel flag is set.
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    if "torch._inductor.config" in sys.modules or not hasattr(torch._C, "_set_deterministic_algorithms"):
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch._C._set_deterministic_algorithms(True, warn_only=True)
