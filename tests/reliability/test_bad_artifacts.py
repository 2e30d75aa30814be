"""Bad artifacts in the store: damaged files are recomputed (with a warning), files from a newer
hashbench are refused and kept, and nothing is ever unpickled.

Each test copies one finished run of a fast grid (smoke: DPSH, no defense, the center
attack), damages one artifact, and runs again.  Unit tests of the store itself are in
tests/test_store.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import warnings
from pathlib import Path
from typing import Callable

import pytest

from hashbench.harness.store import ArtifactStore, CorruptArtifact, NewerFormat
from hashbench.harness.timings import read_timings
from hashbench.results import read_records

from .conftest import FAST, invoke

#: a change of one attack parameter: the attack runs again and needs the model and the codes
RETUNE = ["--set", "params.attacks.center.iterations=4"]


@pytest.fixture
def results(finished: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "results"
    shutil.copytree(finished, copy)
    return copy


def artifact(results: Path, kind: str) -> Path:
    (folder,) = [p for p in (results / "store" / kind).glob("*/*") if (p / "manifest.json").exists()]
    return folder


def records(results: Path) -> dict[str, dict]:
    return {r["cell_id"]: r for r in read_records("smoke", results)}


def rerun(results: Path, *extra: str) -> tuple[object, list[str], dict]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = invoke("run", *FAST, *extra, "--results-dir", str(results), "--quiet", "--no-report")
    manifest = json.loads((results / "smoke" / "run.json").read_text())
    return result, [str(w.message) for w in caught], manifest


def _fix_checksum(folder: Path, name: str) -> None:
    """Rewrite the manifest's checksum of ``name``: a tampered artifact that still 'verifies'."""
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["sha256"][name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) - 7] ^= 0x10
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(("kind", "damage"), [("train", truncate), ("train", flip_bit), ("encode", truncate),
                                              ("encode", flip_bit)],
                         ids=["truncated-checkpoint", "bit-flipped-checkpoint", "truncated-codes", "bit-flipped-codes"])
def test_damaged_artifact_is_recomputed_with_a_warning(results: Path, kind: str, damage: Callable[[Path], None]) -> None:
    folder = artifact(results, kind)
    original = json.loads((folder / "manifest.json").read_text())["sha256"]["tensors.safetensors"]
    before = records(results)
    damage(folder / "tensors.safetensors")
    result, caught, manifest = rerun(results, *RETUNE)
    assert result.exit_code == 0, result.output
    assert any("checksum mismatch" in m and f"recomputing the {kind} stage" in m and str(folder) in m for m in caught), caught
    assert manifest["stages"]["executed_by_kind"] == {kind: 1, "attack": 1, "evaluate": 1}
    # recomputed bit for bit (same seed; the metadata holds timings), and the clean cell is untouched
    assert json.loads((folder / "manifest.json").read_text())["sha256"]["tensors.safetensors"] == original
    after = records(results)
    clean = "shapes-tiny-dpsh-smallcnn-16-none-clean-s0"
    assert after[clean]["metrics"] == before[clean]["metrics"]
    assert set(after) == set(before)


class _Planted:
    """Unpickling this creates the marker file: proof that something was unpickled."""

    marker: Path

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _pickle_payload(marker: Path) -> bytes:
    planted = _Planted()
    planted.marker = marker
    return pickle.dumps({"hash_layer.weight": planted})


HTML = b"<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head><body></body></html>"


@pytest.mark.parametrize("payload", ["pickle", "html"])
@pytest.mark.parametrize("checksum", ["stale", "forged"])
def test_a_checkpoint_that_is_a_pickle_or_a_web_page_is_never_unpickled(results: Path, tmp_path: Path,
                                                                        payload: str, checksum: str) -> None:
    marker = tmp_path / "unpickled"
    folder = artifact(results, "train")
    (folder / "tensors.safetensors").write_bytes(_pickle_payload(marker) if payload == "pickle" else HTML)
    if checksum == "forged":
        _fix_checksum(folder, "tensors.safetensors")
    result, caught, manifest = rerun(results, *RETUNE)
    assert not marker.exists()
    assert result.exit_code == 0, result.output
    reason = "cannot decode" if checksum == "forged" else "checksum mismatch"
    assert any(reason in m and "recomputing the train stage" in m for m in caught), caught
    assert manifest["stages"]["executed_by_kind"] == {"train": 1, "attack": 1, "evaluate": 1}
    assert ArtifactStore(results / "store").load("train", folder.name).tensors  # a real checkpoint again


def test_forged_metadata_is_recomputed_not_trusted(results: Path) -> None:
    folder = artifact(results, "encode")
    (folder / "meta.json").write_text("<html>not json</html>")
    _fix_checksum(folder, "meta.json")
    with pytest.raises(CorruptArtifact, match=r"meta.json: cannot decode"):
        ArtifactStore(results / "store").load_meta("encode", folder.name)
    result, caught, manifest = rerun(results, *RETUNE)
    assert result.exit_code == 0, result.output
    assert manifest["stages"]["executed_by_kind"] == {"encode": 1, "attack": 1, "evaluate": 1}


@pytest.mark.parametrize(
    "manifest",
    [{"format": 1}, {"format": 1, "sha256": {}}, {"format": 1, "sha256": {"meta.json": "0" * 64}}, ["not", "a", "dict"],
     {"format": "1", "sha256": {}}],
    ids=["no-checksums", "empty-checksums", "tensors-unlisted", "not-an-object", "format-not-an-int"],
)
def test_a_manifest_that_does_not_cover_the_files_is_refused(results: Path, manifest) -> None:
    folder = artifact(results, "train")
    if isinstance(manifest, dict) and "sha256" in manifest and "meta.json" in manifest["sha256"]:
        manifest["sha256"]["meta.json"] = hashlib.sha256((folder / "meta.json").read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CorruptArtifact):
        ArtifactStore(results / "store").load("train", folder.name)


def test_an_artifact_from_a_newer_hashbench_is_refused_and_kept(results: Path) -> None:
    folder = artifact(results, "train")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["format"] += 1
    (folder / "manifest.json").write_text(json.dumps(manifest))
    files = {p.name: p.read_bytes() for p in folder.iterdir()}
    before = records(results)
    result, caught, _ = rerun(results, *RETUNE)
    assert result.exit_code != 0
    output = " ".join(result.output.split())  # the console wraps long lines
    assert "was written by a newer hashbench (artifact format 2, this one reads 1); upgrade hashbench" in output
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == files  # not removed, not rewritten
    clean = "shapes-tiny-dpsh-smallcnn-16-none-clean-s0"
    assert records(results)[clean]["metrics"] == before[clean]["metrics"]
    with pytest.raises(NewerFormat):
        ArtifactStore(results / "store").remove("train", folder.name)
    assert folder.exists()


def test_a_cached_evaluation_from_a_newer_hashbench_is_not_overwritten(results: Path) -> None:
    folder = sorted((results / "store" / "evaluate").glob("*/*"))[0]  # one of the two cells' evaluations
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["format"] += 1
    (folder / "manifest.json").write_text(json.dumps(manifest))
    files = {p.name: p.read_bytes() for p in folder.iterdir()}
    result, _, _ = rerun(results)
    assert result.exit_code != 0
    assert "newer hashbench" in result.output
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == files


# -- issue 23 -----------------------------------------------------------------------------------

def _swap_tensors(encode: Path, attack: Path) -> None:
    """The encode artifact's tensors replaced by the attack's, the checksum rewritten to match."""
    shutil.copyfile(attack / "tensors.safetensors", encode / "tensors.safetensors")
    _fix_checksum(encode, "tensors.safetensors")


def _copy_whole_artifact(encode: Path, attack: Path) -> None:
    """The encode artifact's files replaced by the attack's: a self-consistent artifact, of another stage."""
    for name in ("tensors.safetensors", "meta.json", "manifest.json"):
        shutil.copyfile(attack / name, encode / name)


@pytest.mark.parametrize(("swap", "reason"), [(_swap_tensors, "not the encode stage's that its manifest declares"),
                                              (_copy_whole_artifact, "the manifest declares stage 'attack'")],
                         ids=["tensors-swapped", "whole-artifact-of-another-stage"])
def test_an_artifact_holding_another_stages_tensors_is_recomputed(results: Path, swap, reason: str) -> None:
    """It used to pass its (rewritten) checksum and fail the cell with ``KeyError: 'database'``."""
    encode, attack = artifact(results, "encode"), artifact(results, "attack")
    original = json.loads((encode / "manifest.json").read_text())["sha256"]["tensors.safetensors"]
    before = records(results)
    swap(encode, attack)
    with pytest.raises(CorruptArtifact, match="expected 'encode'|swapped for another artifact's"):
        ArtifactStore(results / "store").load("encode", encode.name)
    result, caught, manifest = rerun(results, *RETUNE)
    assert result.exit_code == 0, result.output
    assert any(reason in m and "recomputing the encode stage" in m and str(encode) in m for m in caught), caught
    assert manifest["stages"]["executed_by_kind"] == {"encode": 1, "attack": 1, "evaluate": 1}
    assert json.loads((encode / "manifest.json").read_text())["sha256"]["tensors.safetensors"] == original
    clean = "shapes-tiny-dpsh-smallcnn-16-none-clean-s0"
    assert records(results)[clean]["metrics"] == before[clean]["metrics"]
    assert all(r["status"] == "ok" for r in records(results).values())


def test_random_bytes_in_the_timings_file_are_skipped_by_plan_and_run(results: Path) -> None:
    """100 MB of random bytes in store/timings.jsonl: ``plan`` used to crash (UnicodeDecodeError).
    Both read it through one function, which skips the damaged lines with one warning."""
    timings = results / "store" / "timings.jsonl"
    good = timings.read_bytes()
    timings.write_bytes(good + os.urandom(100 * 2**20) + b"\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        planned = invoke("plan", *FAST, "--results-dir", str(results))
    assert planned.exit_code == 0, planned.output
    damaged = [str(w.message) for w in caught if "damaged line" in str(w.message)]
    assert len(damaged) == 1 and str(timings) in damaged[0], damaged
    result, caught, manifest = rerun(results, *RETUNE)
    assert result.exit_code == 0, result.output
    assert manifest["stages"]["executed_by_kind"] == {"attack": 1, "evaluate": 1}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = read_timings(ArtifactStore(results / "store"))
    assert len(rows) == good.count(b"\n") + 2  # the good lines, and the two stages just run
