"""Content-addressed artifact store: safetensors + JSON, atomic writes, verified reads.

An artifact is a folder ``<root>/<stage>/<key[:2]>/<key>/`` with ``tensors.safetensors``,
``meta.json`` and ``manifest.json`` (format version, the stage kind and key, the names of the
tensors and the sha256 of both files).  It is written into a temporary sibling folder,
fsynced, then renamed into place, so a reader sees either nothing or a complete artifact.
Reads verify the checksums, the declared kind and key, and the tensor names (an artifact whose
tensors were swapped for another's, checksum rewritten, is corrupt); nothing is unpickled.

Processes that share a store (the workers of one run, or two runs on one results folder)
coordinate through one lock file per artifact (``<root>/locks/``, via ``filelock``): whoever
holds the lock computes the artifact, the others wait or do other work.  The operating
system releases a killed process's locks, so a crash never leaves a stage blocked.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from filelock import FileLock
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from hashbench.errors import ArtifactError, HashbenchError

#: Bump when the layout or meaning of stored artifacts changes; part of every key.
FORMAT_VERSION = 1

_TENSORS = "tensors.safetensors"
_META = "meta.json"
_MANIFEST = "manifest.json"


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def artifact_key(stage: str, spec: dict[str, Any]) -> str:
    """sha256 of the stage name, its fully resolved spec (params, input keys, plugin origins) and the format version."""
    return hashlib.sha256(canonical_json({"stage": stage, "format": FORMAT_VERSION, "spec": spec}).encode()).hexdigest()


@dataclass
class Artifact:
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


class CorruptArtifact(ArtifactError):
    """Checksum mismatch or unreadable file: the stage is recomputed."""


class NewerFormat(ArtifactError):
    """Written by a newer hashbench: refused, never guessed at."""


class StoreWriteError(HashbenchError):
    """An artifact, record or timing could not be written (disk full, read-only folder, quota).

    The run stops: every later stage would fail the same way.  What was stored before is intact
    (writes are atomic), so running again after freeing space resumes where it stopped.
    """


def write_failure(what: str, exc: OSError, *, needed: int | None = None, where: Path | None = None) -> StoreWriteError:
    """A :class:`StoreWriteError` saying that writing ``what`` failed, and why (``disk full`` for ENOSPC).

    With ``needed`` (bytes) and ``where`` (the folder written to), a full disk's message also says
    how much space the write needs and how much is free there.
    """
    full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
    reason = f"disk full ({exc})" if full else str(exc)
    if full and needed is not None and where is not None:
        reason += f"; writing {where} needs {format_bytes(needed)}, {format_bytes(free_bytes(where))} free there"
    hint = "free space and run again" if full else "fix that and run again"  # only a full disk wants space
    return StoreWriteError(f"cannot write {what}: {reason}; {hint} (finished stages are kept)")


def format_bytes(n: int | None) -> str:
    """``n`` bytes for people: ``512 B``, ``3.4 KiB``, ``1.2 GiB``; ``unknown`` for None."""
    if n is None:
        return "unknown"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def free_bytes(path: Path) -> int | None:
    """Free bytes on the filesystem of ``path`` (or of its nearest existing parent); None if unknown."""
    for folder in (path, *path.parents):
        try:
            return shutil.disk_usage(folder).free
        except OSError:
            continue
    return None


def stored_bytes(artifact: Artifact) -> int:
    """About what ``artifact`` takes on disk: its tensors' bytes and its metadata."""
    tensors = sum(t.numel() * t.element_size() for t in artifact.tensors.values())
    return tensors + len(canonical_json(artifact.meta)) + 1024 * (1 + len(artifact.tensors))  # headers, manifest


#: how safetensors reports the operating system's error: "... (os error 28)" or "Os { code: 28, ..."
_OS_ERROR = re.compile(r"os error (\d+)|code: (\d+)")


def _os_error(exc: SafetensorError, path: Path) -> OSError | None:
    """The :class:`OSError` behind a safetensors write error (disk full, quota, ...), or None."""
    match = _OS_ERROR.search(str(exc))
    if match is None:
        return None
    code = int(match.group(1) or match.group(2))
    return OSError(code, os.strerror(code), str(path))


def _read_manifest(folder: Path, stage: str | None = None, key: str | None = None) -> dict[str, Any]:
    """The manifest of ``folder``; CorruptArtifact if unreadable or (given ``stage`` and ``key``) if it
    declares another stage kind or key, NewerFormat if from a newer hashbench."""
    try:
        manifest = json.loads((folder / _MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise CorruptArtifact(f"{folder}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict) or isinstance(manifest.get("format"), bool) \
            or not isinstance(manifest.get("format"), int):
        raise CorruptArtifact(f"{folder}: manifest has no format version")
    if manifest["format"] > FORMAT_VERSION:
        raise NewerFormat(
            f"{folder} was written by a newer hashbench (artifact format {manifest['format']}, this one reads "
            f"{FORMAT_VERSION}); upgrade hashbench or use another results folder"
        )
    for field_, expected in (("stage", stage), ("key", key)):
        if expected is not None and manifest.get(field_) != expected:
            raise CorruptArtifact(f"{folder}: the manifest declares {field_} {str(manifest.get(field_))[:80]!r}, "
                                  f"expected {expected!r} (an artifact moved or copied from elsewhere)")
    return manifest


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class ArtifactStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        #: called with the artifact's folder after its files are written, before it is renamed into
        #: place (tests use it to kill a process in the middle of a write)
        self.before_commit: Callable[[Path], None] | None = None

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / key[:2] / key

    def lock(self, key: str) -> FileLock:
        """The inter-process lock of one artifact; ``acquire(timeout=0)`` tries without waiting."""
        path = self.root / "locks" / key[:2] / f"{key}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(str(path))

    def file_lock(self, name: str) -> FileLock:
        """A lock guarding a shared file of the store (e.g. ``timings.jsonl``)."""
        self.root.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.root / f".{name}.lock"))

    def remove_partial(self, stage: str, key: str) -> None:
        """Delete temporary folders of ``key`` left by a writer that died; call it holding :meth:`lock`."""
        parent = self.path(stage, key).parent
        if parent.is_dir():
            for tmp in parent.glob(f".{key[:12]}-*"):
                shutil.rmtree(tmp, ignore_errors=True)

    def load_meta(self, stage: str, key: str) -> dict[str, Any]:
        """Only the artifact's metadata, checksum-verified (cheap: tensors are not read)."""
        folder = self.path(stage, key)
        manifest = _read_manifest(folder, stage, key)
        try:
            digest = manifest["sha256"][_META]
            data = (folder / _META).read_bytes()
        except (OSError, KeyError, TypeError) as exc:
            raise CorruptArtifact(f"{folder}: unreadable manifest or metadata ({exc})") from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise CorruptArtifact(f"{folder / _META}: checksum mismatch (truncated or modified)")
        try:
            return json.loads(data)
        except ValueError as exc:
            raise CorruptArtifact(f"{folder / _META}: cannot decode ({exc})") from None

    def exists(self, stage: str, key: str) -> bool:
        return (self.path(stage, key) / _MANIFEST).exists()

    def load(self, stage: str, key: str) -> Artifact:
        """Read and verify an artifact; raises CorruptArtifact or NewerFormat."""
        folder = self.path(stage, key)
        manifest = _read_manifest(folder, stage, key)
        digests = manifest.get("sha256")
        needed = {_META} | ({_TENSORS} if (folder / _TENSORS).exists() else set())
        # every file that will be read has a checksum, and nothing else is listed
        if not isinstance(digests, dict) or not needed <= set(digests) <= {_META, _TENSORS}:
            listed = sorted(digests) if isinstance(digests, dict) else digests
            raise CorruptArtifact(f"{folder}: manifest lists checksums of {listed}, expected {sorted(needed)}")
        for name, digest in digests.items():
            file = folder / name
            if not file.exists() or _sha256(file) != digest:
                raise CorruptArtifact(f"{file}: checksum mismatch (truncated or modified)")
        try:
            tensors = load_file(folder / _TENSORS) if (folder / _TENSORS).exists() else {}
            meta = json.loads((folder / _META).read_text())
        except Exception as exc:
            raise CorruptArtifact(f"{folder}: cannot decode ({exc})") from None
        declared = manifest.get("tensors")  # absent in artifacts written before hashbench recorded it
        if declared is not None and declared != sorted(tensors):
            shown = ", ".join(sorted(tensors)[:6]) + (", …" if len(tensors) > 6 else "")
            raise CorruptArtifact(f"{folder / _TENSORS}: holds tensors [{shown}], not the {stage} stage's that "
                                  "its manifest declares (swapped for another artifact's)")
        return Artifact(tensors, meta)

    def load_verified(self, stage: str, key: str) -> Artifact | None:
        """The artifact if present and intact; ``None`` (after a warning and removal) if corrupt."""
        if not self.exists(stage, key):
            return None
        try:
            return self.load(stage, key)
        except CorruptArtifact as exc:
            warnings.warn(f"{exc}; recomputing the {stage} stage", stacklevel=2)
            self.remove(stage, key)
            return None

    def save(self, stage: str, key: str, artifact: Artifact) -> Path:
        """Write atomically; if another writer got there first, keep theirs."""
        final = self.path(stage, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key[:12]}-", dir=final.parent))
        try:
            files = {}
            if artifact.tensors:
                tensors = {k: v.detach().cpu().contiguous() for k, v in artifact.tensors.items()}
                try:
                    save_file(tensors, str(tmp / _TENSORS))
                except SafetensorError as exc:  # its I/O errors (a full disk) are OSErrors like the others
                    error = _os_error(exc, tmp / _TENSORS)
                    if error is None:
                        raise
                    raise error from exc
                files[_TENSORS] = tmp / _TENSORS
            (tmp / _META).write_text(canonical_json(artifact.meta))
            files[_META] = tmp / _META
            manifest = {"format": FORMAT_VERSION, "stage": stage, "key": key, "tensors": sorted(artifact.tensors),
                        "sha256": {name: _sha256(p) for name, p in files.items()}}
            (tmp / _MANIFEST).write_text(canonical_json(manifest))
            for p in list(files.values()) + [tmp / _MANIFEST]:
                with open(p, "rb") as f:
                    os.fsync(f.fileno())
            _fsync_dir(tmp)
            if self.before_commit is not None:
                self.before_commit(tmp)
            try:
                os.rename(tmp, final)
            except OSError:
                if not self.exists(stage, key):
                    # a corrupt leftover without a manifest: replace it
                    shutil.rmtree(final, ignore_errors=True)
                    os.rename(tmp, final)
            _fsync_dir(final.parent)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return final

    def remove(self, stage: str, key: str) -> None:
        """Delete an artifact (corrupt, or superseded); never one written by a newer hashbench."""
        folder = self.path(stage, key)
        try:
            _read_manifest(folder)
        except CorruptArtifact:
            pass  # unreadable or absent manifest: nothing there to protect
        shutil.rmtree(folder, ignore_errors=True)


def write_text_atomic(path: Path, text: str, *, mode: int | None = None) -> None:
    """Write ``text`` (UTF-8, newlines untouched) to ``path`` so that a reader sees the old file or
    the new one, never a part: a temporary sibling ``.<name>-<8 random characters>``, flushed and
    fsynced, then renamed over ``path``; the temporary file never outlives a failure.

    ``mode`` sets the file's permissions (the temporary file is created ``0600``).  Raises the
    :class:`OSError` as it is; callers say what failed in their own words.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)  # one write: callers pass the whole text, never a stream of pieces
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json_atomic(path: Path, value: Any) -> None:
    """Write ``value`` to ``path`` via :func:`write_text_atomic` (its folder made first);
    :class:`StoreWriteError` if the disk refuses."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # json.dumps, not json.dump: one write, where json.dump would write each token separately
        write_text_atomic(path, json.dumps(value, indent=2, sort_keys=True, allow_nan=False))
    except OSError as exc:
        raise write_failure(str(path), exc) from exc
