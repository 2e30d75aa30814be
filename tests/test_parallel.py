"""Parallel execution: --workers N, and several runs sharing one results folder."""

import json
import os
import shutil
import subprocess
import sys
import threading
import time

import pytest
import torch
from runner_helpers import SMALL_STAGES, metrics, small_cli_args, small_plan, timings

from hashbench.errors import UserError
from hashbench.harness.executors.parallel import threads_per_worker
from hashbench.harness.runner import Runner
from hashbench.harness.store import ArtifactStore


@pytest.fixture(scope="module")
def sequential(tmp_path_factory, config):
    """The small grid run in this process with the thread count a worker of two gets."""
    root = tmp_path_factory.mktemp("sequential")
    threads = torch.get_num_threads()
    try:  # same threads, so the same float reductions
        Runner(root, "cpu", threads=threads_per_worker(2)).run(small_plan(config), "smoke")
    finally:
        torch.set_num_threads(threads)
    return root


def test_two_workers_give_the_same_records(sequential, config, tmp_path):
    summary = Runner(tmp_path, "cpu", workers=2).run(small_plan(config), "smoke")
    assert summary.executed == SMALL_STAGES and not summary.failed
    assert metrics("smoke", tmp_path) == metrics("smoke", sequential)
    keys = [t["key"] for t in timings(tmp_path)]
    assert len(keys) == len(set(keys)) == sum(SMALL_STAGES.values())  # no stage ran twice
    assert all(t["pid"] != os.getpid() for t in timings(tmp_path))  # they ran in the worker processes


def test_threads_are_set_for_the_run_and_recorded(config, tmp_path):
    before = torch.get_num_threads()
    try:
        Runner(tmp_path, "cpu", threads=1).run(small_plan(config, ["defenses=[none]", "attacks=[]"]), "one")
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert json.loads((tmp_path / "one" / "run.json").read_text())["threads"] == 1


def test_zero_threads_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="--threads must be at least 1"):
        Runner(tmp_path, "cpu", threads=0)


def test_a_stage_another_process_holds_is_waited_for_not_repeated(sequential, config, tmp_path):
    """While 'another process' holds the clean model's lock and stores it, the runner waits, then uses it."""
    plan = small_plan(config, ["defenses=[none]", "attacks=[]"])
    train = plan.cells[0].stages["train"]
    store = ArtifactStore(tmp_path / "store")
    lock = store.lock(train.key)
    lock.acquire()
    released = {}

    def other_process():
        time.sleep(1.0)
        source = ArtifactStore(sequential / "store").path("train", train.key)
        target = store.path("train", train.key)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(source, target)
        released["at"] = time.time()
        lock.release()

    thread = threading.Thread(target=other_process)
    thread.start()
    summary = Runner(tmp_path, "cpu").run(plan, "waited")
    thread.join()
    assert "train" not in summary.executed and summary.cached == {"train": 1}
    # the warm start is an input of train, scheduled before the model appeared in the store
    assert summary.executed == {"split": 1, "chance": 1, "pretrain": 1, "encode": 1, "evaluate": 1}
    assert not summary.failed
    encode = next(t for t in timings(tmp_path) if t["kind"] == "encode")
    assert encode["time"] >= released["at"]  # the model's consumers ran only after it appeared
    assert metrics("waited", tmp_path) == {k: v for k, v in metrics("smoke", sequential).items() if k in metrics("waited", tmp_path)}


def test_two_runs_on_one_results_folder_share_the_work(sequential, tmp_path):
    command = [sys.executable, "-m", "hashbench.cli.main", "run", *small_cli_args(), "--device", "cpu", "--quiet",
               "--no-report", "--threads", str(threads_per_worker(2)), "--results-dir", str(tmp_path)]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    executed = [int(o.split(" stages executed")[0].rsplit(" ", 1)[1]) for o in outputs]
    total = sum(SMALL_STAGES.values())
    keys = [t["key"] for t in timings(tmp_path)]
    assert len(keys) == len(set(keys)) == total  # every stage executed exactly once overall
    assert sum(executed) == total
    assert metrics("smoke", tmp_path) == metrics("smoke", sequential)


def test_the_cli_starts_the_fork_server_before_it_imports_torch(tmp_path):
    # started after torch, the server's own imports do not overlap the CLI's and the first
    # stage waits for them (≈ 2.5 s on two cores)
    probe = (
        "import sys\n"
        "import hashbench.harness.executors.processes as processes\n"
        "def started():\n"
        "    print('torch imported when the server started:', 'torch' in sys.modules)\n"
        "    sys.exit(0)\n"
        "processes.start_worker_server = started\n"
        "from hashbench.cli.main import main\n"
        f"main(['run', '--grid', 'smoke', '--workers', '2', '--results-dir', {str(tmp_path)!r}])\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "torch imported when the server started: False" in out.stdout
    assert not (tmp_path / "smoke").exists()  # it stopped at the server, before any run began
