"""Crash safety: a run SIGKILLed at any moment, restarted, ends with the results of an uninterrupted run."""

import os
import signal
import subprocess
import time

import pytest
from runner_helpers import SMALL_STAGES, cli_command, cli_env, metrics, partials, reference_run, run_cli, timings

TOTAL = sum(SMALL_STAGES.values())


@pytest.fixture(scope="module")
def reference(tmp_path_factory, config):
    return reference_run(config, tmp_path_factory.mktemp("reference"))


def test_killed_at_several_points_then_resumed(reference, tmp_path):
    # killed right after storing its 2nd stage; then in the middle of writing an artifact (its
    # files are on disk in a temporary folder, not yet renamed into place)
    first = run_cli(tmp_path, "2")
    assert first.returncode == -signal.SIGKILL, first.stderr
    assert len(timings(tmp_path)) == 2 and not (tmp_path / "smoke" / "records").exists()
    second = run_cli(tmp_path, "2:writing")
    assert second.returncode == -signal.SIGKILL, second.stderr
    assert len(timings(tmp_path)) == 3 and len(partials(tmp_path)) == 1  # a torn write, invisible to readers
    last = run_cli(tmp_path)
    assert last.returncode == 0, last.stderr
    assert f"{TOTAL - 3} stages executed" in last.stderr
    assert not partials(tmp_path)  # the next writer of that key cleared it
    assert metrics("smoke", tmp_path) == reference
    keys = [t["key"] for t in timings(tmp_path)]
    assert len(keys) == len(set(keys)) == TOTAL  # nothing stored twice


@pytest.mark.slow
def test_sigkill_from_outside_while_workers_run(reference, tmp_path):
    """Kill a two-worker run (its whole process group) at an arbitrary moment, then resume it."""
    proc = subprocess.Popen(cli_command(tmp_path, "--workers", "2"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True,
                            env=cli_env())
    deadline = time.monotonic() + 300
    while len(timings(tmp_path)) < 4 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 0 < len(timings(tmp_path)) < TOTAL
    resumed = run_cli(tmp_path, None, "--workers", "2")
    assert resumed.returncode == 0, resumed.stderr
    assert metrics("smoke", tmp_path) == reference
