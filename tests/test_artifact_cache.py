"""The worker's in-memory artifact cache: bounded by tensor bytes, least recently used out first."""

import torch
from runner_helpers import small_plan

from hashbench.harness.executors.cache import ArtifactCache, artifact_bytes
from hashbench.harness.executors.worker import StageWorker, WorkerConfig
from hashbench.harness.store import Artifact


def art(floats: int) -> Artifact:
    return Artifact({"x": torch.zeros(floats)}, {})


def test_bytes_are_counted_from_the_tensors():
    assert artifact_bytes(Artifact({"a": torch.zeros(10), "b": torch.zeros(3, dtype=torch.int64)}, {})) == 64


def test_the_least_recently_used_artifact_leaves_first_and_the_budget_holds():
    cache = ArtifactCache(budget_bytes=400)  # 100 floats
    cache.put("a", art(40))
    cache.put("b", art(40))
    assert cache.get("a") is not None  # "a" is now the most recent
    cache.put("c", art(40))  # 480 bytes > 400: the least recent ("b") goes
    assert "b" not in cache and "a" in cache and "c" in cache
    assert cache.bytes == 320 <= cache.budget


def test_an_artifact_larger_than_the_budget_is_not_kept_and_evicts_nothing():
    cache = ArtifactCache(budget_bytes=400)
    cache.put("a", art(50))
    cache.put("huge", art(101))
    assert "huge" not in cache and "a" in cache and cache.bytes == 200


def test_putting_a_key_again_replaces_it_without_double_counting():
    cache = ArtifactCache(budget_bytes=400)
    cache.put("a", art(50))
    cache.put("a", art(20))
    assert len(cache) == 1 and cache.bytes == 80


#: the stages of one clean cell, inputs first
ORDER = ("split", "chance", "pretrain", "train", "encode", "evaluate")


def test_a_worker_keeps_inputs_for_later_stages_but_not_evaluations(config, tmp_path):
    plan = small_plan(config, ["defenses=[none]", "attacks=[]"])
    worker = StageWorker(WorkerConfig(str(tmp_path / "store"), device="cpu"), datasets=plan.datasets)
    cell = plan.cells[0]
    for kind in ORDER:
        assert worker.run(cell.stages[kind]).status == "done"
    assert cell.stages["train"].key in worker.cache and cell.stages["encode"].key in worker.cache
    assert cell.evaluate.key not in worker.cache


def test_a_worker_with_a_tiny_budget_still_runs_every_stage(config, tmp_path):
    plan = small_plan(config, ["defenses=[none]", "attacks=[]"])
    worker = StageWorker(WorkerConfig(str(tmp_path / "store"), device="cpu", cache_mb=0), datasets=plan.datasets)
    cell = plan.cells[0]
    assert [worker.run(cell.stages[k]).status for k in ORDER] == ["done"] * len(ORDER)
    # nothing that costs memory is kept; the chance stage's artifact has no tensors (0 bytes)
    assert worker.cache.bytes == 0 and cell.stages["train"].key not in worker.cache


def test_a_worker_pool_keeps_the_configured_cache_budget(tmp_path):
    from hashbench.harness.executors.parallel import PoolExecutor, threads_per_worker

    pool = PoolExecutor(WorkerConfig(str(tmp_path / "store"), device="cpu", cache_mb=7), workers=2)
    try:
        assert pool.config.cache_mb == 7 and pool.config.threads == threads_per_worker(2)
    finally:
        pool.close()
