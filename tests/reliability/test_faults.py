"""Faults during a run (issue 9): SIGKILL at seeded random moments, a full disk, a loss that
becomes NaN.  Each case checks the message and that nothing finished was lost."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from runner_helpers import (SMALL_STAGES, cli_command, cli_env, metrics, partials, reference_run, run_cli,
                            small_cli_args, small_plan)

from hashbench import plugins
from hashbench.harness.runner import Runner
from hashbench.harness.store import ArtifactStore
from hashbench.harness.timings import read_timings
from hashbench.results import read_records

from .conftest import invoke

TOTAL = sum(SMALL_STAGES.values())
#: the seed of the kill points; the points it draws are checked below, so a change is seen
SEED = 9
KILLS = 5


def kill_points(seed: int = SEED) -> list[str]:
    """``HASHBENCH_CRASH_AFTER`` values of consecutive restarts: ``n`` dies right after storing
    its n-th stage, ``n:writing`` while writing the n-th artifact (files on disk, not yet in
    place).  Together they store fewer than ``TOTAL - 2`` stages, so every one of them fires."""
    rng = random.Random(seed)
    points, stored = [], 0
    while len(points) < KILLS:
        n, writing = rng.randint(1, 3), rng.random() < 0.5
        if stored + n - writing > TOTAL - 3:
            continue
        points.append(f"{n}:writing" if writing else str(n))
        stored += n - writing
    return points


def stored_artifacts(results_dir: Path) -> dict[str, str]:
    """key → stage kind of every artifact in the store, each loaded and checksum-verified."""
    store = ArtifactStore(results_dir / "store")
    found = {}
    for manifest in (results_dir / "store").glob("*/??/*/manifest.json"):
        kind, key = manifest.parent.parent.parent.name, manifest.parent.name
        if key.startswith("."):
            continue  # a write that never completed (see partials)
        store.load(kind, key)  # raises CorruptArtifact if anything is off
        found[key] = kind
    return found


def stored_timings(results_dir: Path) -> list[dict]:
    return read_timings(ArtifactStore(results_dir / "store"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, config) -> dict[str, dict]:
    return reference_run(config, tmp_path_factory.mktemp("reference"))


def test_kill_points_cover_both_phases():
    points = kill_points()
    assert len(points) == KILLS >= 5
    assert any(p.endswith(":writing") for p in points) and any(":" not in p for p in points)


def _resume_and_compare(results_dir: Path, reference: dict[str, dict], stored: int) -> list[str]:
    """Run to the end: only the missing stages run, and the records are the uninterrupted run's.
    Returns the keys of the timing lines (each stage at most once: none ran twice)."""
    last = run_cli(results_dir)
    assert last.returncode == 0, last.stderr
    assert f"{TOTAL - stored} stages executed" in last.stderr
    assert not partials(results_dir)  # the next writer of a torn key cleared it
    assert metrics("smoke", results_dir) == reference  # identical records
    assert len(stored_artifacts(results_dir)) == TOTAL
    keys = [t["key"] for t in stored_timings(results_dir)]
    assert len(keys) == len(set(keys)) and set(keys) <= set(stored_artifacts(results_dir))
    return keys


def test_killed_at_random_moments_then_resumed(reference, tmp_path):
    """Five seeded kill points, some in the middle of an artifact write, and a line of the
    timings file torn by a kill; the restart ends with the uninterrupted run's records."""
    before: dict[str, str] = {}
    killed_while_writing = []
    for number, point in enumerate(kill_points()):
        result = run_cli(tmp_path, point)
        assert result.returncode == -signal.SIGKILL, (point, result.stderr)
        n, _, phase = point.partition(":")
        now = stored_artifacts(tmp_path)
        assert before.items() <= now.items()  # nothing finished was lost, and all of it verifies
        assert len(now) == len(before) + int(n) - (phase == "writing")
        torn = partials(tmp_path)
        # a write cut short stays in its temporary folder, invisible to readers; the next writer
        # of that key (the next run's first stage) clears it
        assert len(torn) == (phase == "writing")
        killed_while_writing += [t.parent.parent.name for t in torn]
        assert all(r["status"] == "ok" for r in read_records("smoke", tmp_path))  # records are whole
        if number == 1:
            # a process killed in the middle of appending to timings.jsonl leaves a line without
            # its newline; the next append must not be glued to it
            with open(tmp_path / "store" / "timings.jsonl", "ab") as f:
                f.write(b'{"key": "torn-by-a-kil')
        before = now
    assert len(stored_timings(tmp_path)) == len(before)
    assert killed_while_writing  # at least one artifact was torn mid-write
    assert len(_resume_and_compare(tmp_path, reference, len(before))) == TOTAL  # no timing line lost


@pytest.mark.slow
def test_sigkill_from_outside_at_random_instants(reference, tmp_path):
    """Two SIGKILLs from outside, each at a seeded random instant after a stage is stored.
    (A kill between storing an artifact and appending its timing line loses that line, and only
    that: the stage is not run again.)"""
    rng = random.Random(SEED)
    before: dict[str, str] = {}
    for _ in range(2):
        proc = subprocess.Popen(cli_command(tmp_path), env=cli_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while len(stored_timings(tmp_path)) <= len(before) and proc.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 1.5))
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL
        now = stored_artifacts(tmp_path)
        assert before.items() <= now.items() and len(before) < len(now) < TOTAL
        assert len(partials(tmp_path)) <= 1
        before = now
    _resume_and_compare(tmp_path, reference, len(before))


# -- disk full ---------------------------------------------------------------------------------

#: a cheap grid: shapes-tiny, DPSH, no defense, the center attack (clean and attacked cells)
NO_DEFENSE = ["defenses=[none]"]


def _cli_set(extra: list[str]) -> list[str]:
    return [*small_cli_args(), *[a for s in extra for a in ("--set", s)]]


def test_disk_full_while_storing_a_stage(tmp_path, monkeypatch):
    import hashbench.harness.store as store_module

    results = tmp_path / "results"
    real_save_file = store_module.save_file

    def full_disk(tensors, filename, *args, **kwargs):
        if f"{os.sep}attack{os.sep}" in filename:
            with open(filename, "wb") as f:  # the disk fills up part-way through the file
                f.write(b"\0" * 100)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), filename)
        return real_save_file(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(store_module, "save_file", full_disk)
    result = invoke("run", *_cli_set(NO_DEFENSE), "--device", "cpu", "--quiet", "--no-report",
                    "--results-dir", str(results))
    assert result.exit_code == 1, (result.output, result.exception)
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("hashbench: failed: cannot write the artifact of the attack stage (attack center")
    assert "disk full" in line and "No space left on device" in line
    # the store is intact: no partial artifact, no attack artifact, everything else verifies
    assert not partials(results)
    kept = stored_artifacts(results)
    assert "attack" not in kept.values() and {"split", "train", "encode"} <= set(kept.values())
    assert sorted(t["key"] for t in stored_timings(results)) == sorted(kept)
    done = read_records("smoke", results)
    assert all(r["status"] == "ok" for r in done)  # any record written is complete
    assert json.loads((results / "smoke" / "run.json").read_text())["status"] == "aborted"

    monkeypatch.setattr(store_module, "save_file", real_save_file)  # space was freed
    again = invoke("run", *_cli_set(NO_DEFENSE), "--device", "cpu", "--quiet", "--no-report",
                   "--results-dir", str(results))
    assert again.exit_code == 0, again.output
    records = read_records("smoke", results)
    assert len(records) == 2 and all(r["status"] == "ok" for r in records)
    keys = [t["key"] for t in stored_timings(results)]
    assert len(keys) == len(set(keys))  # what was stored before the failure was not recomputed
    assert set(kept) < set(stored_artifacts(results))


def test_disk_full_inside_safetensors_is_one_line_with_the_space_needed(tmp_path, monkeypatch):
    """safetensors reports a full disk as its own ``SafetensorError``, which used to escape as a
    traceback.  Now: one line naming the artifact's path and the space it needs; nothing torn."""
    from safetensors import SafetensorError

    import hashbench.harness.store as store_module

    results = tmp_path / "results"
    real_save_file = store_module.save_file

    def full_disk(tensors, filename, *args, **kwargs):
        if f"{os.sep}attack{os.sep}" in filename:
            with open(filename, "wb") as f:  # part of the file reached the disk
                f.write(b"\0" * 100)
            # what safetensors 0.4+ raises when the disk fills up (its message, verbatim)
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        return real_save_file(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(store_module, "save_file", full_disk)
    result = invoke("run", *_cli_set(NO_DEFENSE), "--device", "cpu", "--quiet", "--no-report",
                    "--results-dir", str(results))
    assert result.exit_code == 1, (result.output, result.exception)
    assert "Traceback" not in result.output and "SafetensorError" not in result.output, result.output
    line = " ".join(result.output.split("hashbench: failed: ", 1)[1].split())  # the one line, unwrapped
    assert line.startswith("cannot write the artifact of the attack stage (attack center"), line
    assert "disk full ([Errno 28] No space left on device" in line, line
    attack_dir = results.resolve() / "store" / "attack"
    assert f"writing {attack_dir}{os.sep}" in line and " needs " in line and " free there; free space and run again" in line
    assert not partials(results)  # nothing torn
    assert "attack" not in stored_artifacts(results).values()
    assert json.loads((results / "smoke" / "run.json").read_text())["status"] == "aborted"


def test_a_real_write_error_of_safetensors_becomes_an_os_error(tmp_path):
    """A genuine safetensors I/O failure (a file-size limit standing in for a full disk, in a child
    process): ``save`` raises the OSError with its errno, and leaves nothing behind."""
    code = f"""
import errno, resource, signal, torch
from hashbench.harness.store import Artifact, ArtifactStore
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, resource.RLIM_INFINITY))
try:
    ArtifactStore({str(tmp_path)!r}).save("encode", "ab" * 32, Artifact({{"x": torch.zeros(100_000)}}, {{}}))
except OSError as exc:
    print(errno.errorcode[exc.errno], exc.filename)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    name, filename = done.stdout.split()
    assert name == "EFBIG" and filename.endswith("tensors.safetensors")
    assert [p.name for p in tmp_path.rglob("*")] == ["encode", "ab"]  # no temporary folder or file left


def test_disk_full_while_writing_a_record(config, tmp_path, monkeypatch):
    """The record write hits ENOSPC: a clear error naming the file, no half-written record."""
    real_fdopen = os.fdopen

    class FillsUp:
        """A file whose disk fills up part-way through writing a record."""

        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.f.__exit__(*exc)

        def write(self, text):
            if '"cell_id"' in text:
                self.f.write(text[:20])  # part of the record reached the disk
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self.f.write(text)

        def __getattr__(self, name):
            return getattr(self.f, name)

    monkeypatch.setattr(os, "fdopen", lambda *args, **kwargs: FillsUp(real_fdopen(*args, **kwargs)))
    plan = small_plan(config, NO_DEFENSE + ["attacks=[]"])
    with pytest.raises(Exception, match=r"cannot write .*records.*\.json: disk full") as caught:
        Runner(tmp_path, "cpu").run(plan, "smoke")
    assert type(caught.value).__name__ == "StoreWriteError"
    records = tmp_path / "smoke" / "records"
    assert not list(records.iterdir())  # neither the record nor its temporary file is left
    manifest = json.loads((tmp_path / "smoke" / "run.json").read_text())
    assert manifest["status"] == "aborted" and "disk full" in manifest["error"] and manifest["finished"]
    monkeypatch.setattr(os, "fdopen", real_fdopen)
    summary = Runner(tmp_path, "cpu").run(plan, "smoke")
    assert summary.executed == {} and not summary.failed  # every stage was kept; only the record was missing
    assert [r["status"] for r in read_records("smoke", tmp_path)] == ["ok"]


def test_an_interrupted_run_says_so_in_run_json(config, tmp_path, monkeypatch):
    """Ctrl-C during a stage: the interrupt propagates and run.json no longer claims "running"."""
    import dataclasses

    from hashbench.harness.stages.kinds import KINDS

    def interrupt(ctx, stage):
        raise KeyboardInterrupt

    monkeypatch.setitem(KINDS, "train", dataclasses.replace(KINDS["train"], run=interrupt))
    with pytest.raises(KeyboardInterrupt):
        Runner(tmp_path, "cpu").run(small_plan(config, NO_DEFENSE + ["attacks=[]"]), "smoke")
    manifest = json.loads((tmp_path / "smoke" / "run.json").read_text())
    assert manifest["status"] == "interrupted" and manifest["error"] == "KeyboardInterrupt: "
    assert manifest["finished"] and manifest["wall_s"] > 0


# -- a loss that becomes NaN -------------------------------------------------------------------

def test_nan_loss_fails_its_cell_with_epoch_and_step(config, tmp_path):
    """A method whose loss is NaN at epoch 2, step 3: its cells fail saying so; DPSH's finish.
    (A diverging defense is covered by tests/test_runner.py.)"""
    dpsh = plugins.methods.get("dpsh")

    class NanLoss(dpsh):
        name = "nanloss"

        def on_epoch_start(self, epoch: int) -> None:
            self.epoch, self.step = epoch, 0

        def loss(self, u, y, idx):
            self.step += 1
            value = super().loss(u, y, idx)
            return value * float("nan") if (self.epoch, self.step) == (1, 3) else value

    plugins.methods.register("nanloss", NanLoss)
    try:
        plan = small_plan(config, ["methods=[dpsh,nanloss]", "defenses=[none]", "attacks=[center]",
                                   "params.methods.nanloss.epochs=2", "params.methods.nanloss.batch_size=32"])
        summary = Runner(tmp_path, torch.device("cpu")).run(plan, "nan")
    finally:
        plugins.methods.unregister("nanloss")
    records = {r["cell_id"]: r for r in read_records("nan", tmp_path)}
    assert len(records) == 4
    failed = [r for r in records.values() if r["status"] == "failed"]
    assert {r["cell"]["method"] for r in failed} == {"nanloss"} and len(failed) == 2
    for r in failed:
        assert r["failed_stage"] == "train" and "TrainingDiverged" in r["error"]
        assert "train nanloss: loss 'loss' is nan at epoch 2, step 3" in r["error"]
    assert len(summary.failed) == 2
    ok = [r for r in records.values() if r["status"] == "ok"]
    assert {r["cell"]["method"] for r in ok} == {"dpsh"} and all(0 <= r["metrics"]["map"] <= 1 for r in ok)
