"""Every process that runs stages uses deterministic kernels, without TorchInductor's start-up cost."""

import os
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor

import torch

from hashbench.harness.executors.parallel import _init
from hashbench.harness.executors.processes import worker_context
from hashbench.harness.executors.worker import WorkerConfig

PROBE = """
import sys, torch
from hashbench.harness.executors.worker import StageWorker, WorkerConfig
assert not torch.are_deterministic_algorithms_enabled()
StageWorker(WorkerConfig(sys.argv[1], device="cpu"))
import os
print(torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
      "torch._inductor" in sys.modules, os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
"""


def test_a_stage_worker_turns_on_deterministic_kernels_without_importing_inductor(tmp_path):
    proc = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path / "store")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "True", "False", ":4096:8"]


def test_pool_worker_processes_use_deterministic_kernels(tmp_path):
    config = WorkerConfig(str(tmp_path / "store"), device="cpu", threads=1)
    with ProcessPoolExecutor(1, mp_context=worker_context(), initializer=_init, initargs=(config, os.getpid())) as pool:
        assert pool.submit(torch.are_deterministic_algorithms_enabled).result(timeout=120) is True
