"""--executor ray on a local Ray instance: the same DAG as Ray tasks, the same records as the local executor."""

import json

import pytest
import torch
from runner_helpers import SMALL_STAGES, metrics, small_plan, timings

from hashbench.harness.runner import Runner

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")


def test_ray_gives_the_records_of_the_local_executor(config, tmp_path):
    plan = small_plan(config)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # both executors on one thread: float reductions then agree bit for bit
    try:
        Runner(tmp_path / "local", "cpu").run(plan, "smoke")
    finally:
        torch.set_num_threads(threads)
    # pinned: Ray gives its workers one thread only when OMP_NUM_THREADS is not set already
    summary = Runner(tmp_path / "ray", "cpu", executor="ray", threads=1).run(plan, "smoke")
    assert not ray.is_initialized()  # the instance the runner started is shut down
    assert summary.executed == SMALL_STAGES and not summary.failed
    assert metrics("smoke", tmp_path / "ray") == metrics("smoke", tmp_path / "local")
    keys = [t["key"] for t in timings(tmp_path / "ray")]
    assert len(keys) == len(set(keys)) == sum(SMALL_STAGES.values())
    manifest = json.loads((tmp_path / "ray" / "smoke" / "run.json").read_text())
    assert manifest["executor"] == "ray" and manifest["status"] == "complete"
    assert all(entry["device"] == "cpu" for entry in manifest["stages"]["log"])
