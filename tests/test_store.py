import json

import pytest
import torch

from hashbench.harness.store import FORMAT_VERSION, Artifact, ArtifactStore, CorruptArtifact, NewerFormat, artifact_key


def test_key_depends_on_everything_in_the_spec():
    a = artifact_key("train", {"epochs": 3, "inputs": {"split": "k1"}})
    assert a == artifact_key("train", {"inputs": {"split": "k1"}, "epochs": 3})  # order-free
    assert a != artifact_key("train", {"epochs": 4, "inputs": {"split": "k1"}})
    assert a != artifact_key("train", {"epochs": 3, "inputs": {"split": "k2"}})
    assert a != artifact_key("attack", {"epochs": 3, "inputs": {"split": "k1"}})


def test_roundtrip_and_atomic_layout(tmp_path):
    store = ArtifactStore(tmp_path)
    art = Artifact({"codes": torch.tensor([[1, -1]], dtype=torch.int8)}, {"wall_s": 1.5})
    store.save("encode", "ab" * 32, art)
    back = store.load("encode", "ab" * 32)
    assert torch.equal(back.tensors["codes"], art.tensors["codes"]) and back.meta == {"wall_s": 1.5}
    siblings = list(store.path("encode", "ab" * 32).parent.iterdir())
    assert [p.name for p in siblings] == ["ab" * 32]  # no temporary folder left behind


def test_bit_flip_is_detected_and_recomputed(tmp_path):
    store = ArtifactStore(tmp_path)
    key = "cd" * 32
    store.save("train", key, Artifact({"w": torch.arange(100, dtype=torch.float32)}, {}))
    file = store.path("train", key) / "tensors.safetensors"
    data = bytearray(file.read_bytes())
    data[-3] ^= 0xFF
    file.write_bytes(bytes(data))
    with pytest.raises(CorruptArtifact, match="checksum mismatch"):
        store.load("train", key)
    with pytest.warns(UserWarning, match="recomputing the train stage"):
        assert store.load_verified("train", key) is None
    assert not store.exists("train", key)


def test_newer_format_is_refused(tmp_path):
    store = ArtifactStore(tmp_path)
    key = "ef" * 32
    store.save("split", key, Artifact({}, {"x": 1}))
    manifest = store.path("split", key) / "manifest.json"
    m = json.loads(manifest.read_text())
    m["format"] = FORMAT_VERSION + 1
    manifest.write_text(json.dumps(m))
    with pytest.raises(NewerFormat, match="newer hashbench"):
        store.load("split", key)


def test_a_pickle_is_never_loaded(tmp_path):
    store = ArtifactStore(tmp_path)
    key = "12" * 32
    store.save("train", key, Artifact({"w": torch.zeros(2)}, {}))
    folder = store.path("train", key)
    # replace the tensors with a pickle and fix up the checksum: decoding must still refuse it
    import hashlib
    import pickle

    payload = pickle.dumps({"w": torch.zeros(2)})
    (folder / "tensors.safetensors").write_bytes(payload)
    m = json.loads((folder / "manifest.json").read_text())
    m["sha256"]["tensors.safetensors"] = hashlib.sha256(payload).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(CorruptArtifact, match="cannot decode"):
        store.load("train", key)


def test_second_writer_keeps_the_first(tmp_path):
    store = ArtifactStore(tmp_path)
    key = "34" * 32
    store.save("split", key, Artifact({}, {"v": 1}))
    store.save("split", key, Artifact({}, {"v": 2}))
    assert store.load("split", key).meta == {"v": 1}


def test_a_write_failure_says_what_is_wrong_and_asks_for_space_only_when_the_disk_is_full():
    import errno

    from hashbench.harness.store import write_failure

    read_only = str(write_failure("the record", OSError(errno.EROFS, "Read-only file system")))
    assert "Read-only file system" in read_only and "free space" not in read_only
    assert read_only.endswith("fix that and run again (finished stages are kept)")
    long_name = str(write_failure("the record", OSError(errno.ENAMETOOLONG, "File name too long")))
    assert "File name too long" in long_name and "free space" not in long_name
    full = str(write_failure("the record", OSError(errno.ENOSPC, "No space left on device")))
    assert full.startswith("cannot write the record: disk full") and "free space and run again" in full
