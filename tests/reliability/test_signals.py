"""Signals (issue 23): SIGTERM and SIGHUP stop ``hashbench run`` as Ctrl-C does.

After the signal: exit code 128 + the signal, one line on stderr, ``run.json`` says
``"interrupted"``, no partial artifact, no process of the run left (workers, fork server,
resource tracker), and running the same command again ends with the records of a run that was
never interrupted (``hashbench compare --threshold 0``).  A coordinator killed outright
(SIGKILL) takes its workers with it.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from runner_helpers import THREADS, cli_env, metrics, partials

from hashbench.harness.interrupts import interrupt_on_signals

from .conftest import FAST
from .test_faults import stored_artifacts, stored_timings


def command(results: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "hashbench.cli.main", "run", *FAST, "--device", "cpu", "--quiet", "--no-report",
            "--threads", str(THREADS), "--results-dir", str(results), *extra]


def session_processes(sid: int) -> list[tuple[int, str]]:
    """(pid, command line) of the live processes of session ``sid`` (zombies are dead: left out)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append((int(entry), cmdline[:120]))
    return found


def wait_until_gone(sid: int, timeout: float = 15.0) -> list[tuple[int, str]]:
    """The processes of session ``sid`` still alive after ``timeout`` seconds (none, if all went)."""
    deadline = time.monotonic() + timeout
    while (left := session_processes(sid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def start(results: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(command(results, *extra), env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def wait_for_stages(proc: subprocess.Popen, results: Path, count: int, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while len(stored_timings(results)) < count and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)


def stop(proc: subprocess.Popen, sig: int) -> tuple[int, str, list[tuple[int, str]]]:
    """Send ``sig`` to the run's main process only; (exit code, stderr, processes left after 15 s)."""
    try:
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)  # the pipe closes when every process holding it has gone
        return proc.returncode, err, wait_until_gone(proc.pid)
    finally:
        left = session_processes(proc.pid)
        if left:  # never leave a stray process behind, whatever the test found
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def assert_stopped_cleanly(results: Path, code: int, err: str, left: list, sig: int) -> None:
    name = signal.Signals(sig).name
    assert code == 128 + sig, (code, err)
    assert err.strip().splitlines()[-1] == (f"hashbench: interrupted by {name}; finished stages are kept: "
                                            "run the same command again to resume"), err
    assert "Traceback" not in err, err
    assert not left, left  # workers, fork server, resource tracker: all gone
    manifest = json.loads((results / "smoke" / "run.json").read_text())
    assert manifest["status"] == "interrupted" and manifest["finished"], manifest
    if sig != signal.SIGINT:
        assert manifest["error"] == f"Interrupted: {name}"
    assert not partials(results)  # the interrupted write was removed as its stage unwound
    stored_artifacts(results)  # every artifact stored verifies


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted run of the FAST grid (run name ``reference``) in its own results folder."""
    results = tmp_path_factory.mktemp("reference")
    done = subprocess.run(command(results, "--run", "reference"), env=cli_env(), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    return results


def stages(reference: Path) -> int:
    """How many stages the FAST grid has (all of them ran in the reference run)."""
    return json.loads((reference / "reference" / "run.json").read_text())["stages"]["executed"]


def resume_and_compare(results: Path, reference: Path, *extra: str) -> None:
    """Run again to the end: only missing stages run, and the records equal the uninterrupted run's."""
    before = stored_artifacts(results)
    again = subprocess.run(command(results, *extra), env=cli_env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert f"{stages(reference) - len(before)} stages executed" in again.stderr
    keys = [t["key"] for t in stored_timings(results)]
    assert len(keys) == len(set(keys))  # no stage ran twice
    shutil.copytree(reference / "reference", results / "reference")
    compared = subprocess.run([sys.executable, "-m", "hashbench.cli.main", "compare", "reference", "smoke",
                               "--threshold", "0", "--results-dir", str(results)],
                              env=cli_env(), capture_output=True, text=True, timeout=120)
    assert compared.returncode == 0, compared.stdout + compared.stderr
    assert "all 2 cells within 0 MAP points" in compared.stderr
    assert metrics("smoke", results) == metrics("reference", reference)


def test_sigterm_stops_a_run_cleanly_and_it_resumes_to_the_same_records(reference, tmp_path):
    proc = start(tmp_path)
    wait_for_stages(proc, tmp_path, 2)
    code, err, left = stop(proc, signal.SIGTERM)
    assert_stopped_cleanly(tmp_path, code, err, left, signal.SIGTERM)
    assert 2 <= len(stored_artifacts(tmp_path)) < stages(reference)
    resume_and_compare(tmp_path, reference)


def test_sigterm_with_two_workers_stops_the_workers_and_the_fork_server(reference, tmp_path):
    proc = start(tmp_path, "--workers", "2")
    wait_for_stages(proc, tmp_path, 2)
    workers = [p for p in session_processes(proc.pid) if "forkserver" in p[1]]
    assert len(workers) >= 2, workers  # the fork server and at least one worker were running
    begun = time.monotonic()
    code, err, left = stop(proc, signal.SIGTERM)
    assert time.monotonic() - begun < 20  # seconds, not the rest of a stage
    assert_stopped_cleanly(tmp_path, code, err, left, signal.SIGTERM)
    resume_and_compare(tmp_path, reference, "--workers", "2")


def test_signals_ignored_on_purpose_stay_ignored():
    """``nohup`` ignores SIGHUP: a run started under it must not stop when the terminal closes."""
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with interrupt_on_signals():
            assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_IGN, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGHUP)  # ignored: nothing raised
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # restored after the block
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_one_signal_interrupts_and_a_second_one_is_ignored_while_stopping():
    raised = 0
    with pytest.raises(KeyboardInterrupt) as caught:
        with interrupt_on_signals():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
            except KeyboardInterrupt:
                raised += 1
                os.kill(os.getpid(), signal.SIGTERM)  # during the clean-up: ignored
                time.sleep(0.1)
                raise
    assert raised == 1 and caught.value.signum == signal.SIGTERM


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["1", "2"])
def test_sighup_stops_a_run_cleanly(reference, tmp_path, workers):
    proc = start(tmp_path, "--workers", workers)
    wait_for_stages(proc, tmp_path, 2)
    code, err, left = stop(proc, signal.SIGHUP)
    assert_stopped_cleanly(tmp_path, code, err, left, signal.SIGHUP)
    resume_and_compare(tmp_path, reference, "--workers", workers)


@pytest.mark.slow
def test_a_coordinator_killed_outright_takes_its_workers_with_it(reference, tmp_path):
    """SIGKILL to the main process alone: its workers notice, unwind their stage and exit, and the
    fork server follows; nothing torn is left."""
    proc = start(tmp_path, "--workers", "2")
    wait_for_stages(proc, tmp_path, 2)
    code, _, left = stop(proc, signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert not left, left
    assert not partials(tmp_path)
    stored_artifacts(tmp_path)
    resume_and_compare(tmp_path, reference, "--workers", "2")


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_and_sighup_at_random_instants_then_resumed(reference, tmp_path, workers):
    """Three signals at seeded random instants after the start (in planning, in a stage, between
    stages); each stops the run cleanly, and the last run gives the uninterrupted run's records."""
    rng = random.Random(23 + int(workers))
    for round_ in range(3):
        sig = (signal.SIGTERM, signal.SIGHUP)[round_ % 2]
        stored = len(stored_artifacts(tmp_path))
        (tmp_path / "smoke" / "run.json").unlink(missing_ok=True)  # whatever is there after the signal is this round's
        proc = start(tmp_path, "--workers", workers)
        time.sleep(rng.uniform(1.0, 6.0))
        code, err, left = stop(proc, sig)
        assert not left, left
        if code == 0:
            break  # it finished before the signal came
        if code == -sig:  # before the command began (Python still starting) or after it ended
            run_json = tmp_path / "smoke" / "run.json"
            ended = run_json.exists() and json.loads(run_json.read_text())["status"] == "complete"
            assert ended or len(stored_artifacts(tmp_path)) == stored
            if ended:
                break
            continue
        if (tmp_path / "smoke" / "run.json").exists():
            assert_stopped_cleanly(tmp_path, code, err, left, sig)
        else:  # stopped while planning, before the run's folder existed
            assert code == 128 + sig and "Traceback" not in err, err
    resume_and_compare(tmp_path, reference, "--workers", workers)
