"""What this device does with the networks a plan runs: measured rates for the first-run estimate.

Before a device has recorded timings, ``hashbench plan`` turns a stage's FLOPs into seconds
with the rate of the stage's own network, measured here in a fraction of a second:

- :func:`measure_rate`: a network (:func:`hashbench.harness.cost.network_rate`: the hash model of the
  stage's backbone, image side and output count) run on random images at the stage's batch size. ``"train"`` times a training step (forward,
  backward, an optimiser step), the work of pretrain, train, defend, prepare and attack stages;
  ``"infer"`` a forward pass without gradients, the work of encode. The rate is the counted
  FLOPs of the timed steps over their wall time, so small batches, memory-bound layers and
  the framework's per-call cost are in it, which a bare matrix multiply misses (on a 2-core
  CPU the small CNN reaches about a third of the matmul rate);
- :func:`load_seconds`: reading (and, for training, augmenting) one image of the stage's own
  dataset, which every epoch and every encode pays on top of the network;
- :func:`stage_overhead_s`: what a stage costs besides its network: writing its artifact
  (safetensors, metadata, manifest, fsyncs) and its timing line, and reading its inputs back,
  measured with a real :class:`~hashbench.harness.store.ArtifactStore` in a temporary folder next to
  the results; :func:`record_write_s`: writing one cell's record there;
- :func:`evaluate_seconds`: an evaluate stage's ranking metrics
  (:func:`hashbench.retrieval.metrics.retrieval_metrics`) on random codes of the split's sizes;
- :func:`first_optimiser_s`: the one-off cost of a process's first optimiser (torch imports its
  compiler stack then), which a run pays in its first training stage.

On a CPU, large networks are timed at a smaller batch (:data:`PROBE_FLOPS` per step at most) so
that ``plan`` stays quick; their rate hardly depends on the batch once it is a few images.
"""

from __future__ import annotations

import functools
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from hashbench.api.dataset import HashDataset
from hashbench.harness.store import Artifact, ArtifactStore, write_json_atomic
from hashbench.retrieval.metrics import retrieval_metrics

#: the most FLOPs one timed step may take on a CPU (about half a second on two cores)
PROBE_FLOPS = 5e10
#: timed steps stop once they add up to this many seconds (after one untimed warm-up step)
PROBE_SECONDS = 0.3
#: and never run more than this many steps
PROBE_MAX_STEPS = 20


def probe_batch(batch: int, forward_flops: int, mode: str, device: str) -> int:
    """The batch a rate is measured at: the stage's, capped on a CPU to :data:`PROBE_FLOPS` per step."""
    if torch.device(device).type != "cpu":
        return max(1, batch)
    per_image = forward_flops * (3 if mode == "train" else 1)
    return max(1, min(batch, int(PROBE_FLOPS // max(per_image, 1))))


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step: Callable[[], None], device: torch.device) -> tuple[int, float]:
    """(steps, seconds) of timed calls of ``step`` after one warm-up call."""
    step()
    _synchronise(device)
    steps, start = 0, time.perf_counter()
    while True:
        step()
        steps += 1
        _synchronise(device)
        elapsed = time.perf_counter() - start
        if elapsed >= PROBE_SECONDS or steps >= PROBE_MAX_STEPS:
            return steps, elapsed


def measure_rate(build: Callable[[], nn.Module], image_size: int, forward_flops: int, batch: int, mode: str,
                 device: str) -> float:
    """FLOP/s of ``build()`` here: ``mode`` ``"train"`` (forward + backward + SGD step, counted as 3
    forwards) or ``"infer"`` (forward without gradients), at :func:`probe_batch` of ``batch``."""
    if mode not in ("train", "infer"):
        raise ValueError(f"mode must be 'train' or 'infer', not {mode!r}")
    dev = torch.device(device)
    size = probe_batch(batch, forward_flops, mode, device)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(size, 3, image_size, image_size, generator=generator).to(dev)
    net = build().to(dev)
    if mode == "train":
        net.train()
        optimiser = torch.optim.SGD(net.parameters(), lr=0.0)

        def step() -> None:
            optimiser.zero_grad(set_to_none=True)
            net(x).float().square().mean().backward()
            optimiser.step()
    else:
        net.eval()

        def step() -> None:
            with torch.no_grad():
                net(x)
    steps, seconds = time_steps(step, dev)
    passes = 3 if mode == "train" else 1
    return forward_flops * passes * size * steps / max(seconds, 1e-9)


#: images read per timing of :func:`load_seconds`
LOAD_PROBE_IMAGES = 32


def load_seconds(dataset: HashDataset, augment: bool) -> float:
    """Seconds to read one image of ``dataset`` (augmented when ``augment``): the median of three
    batches of :data:`LOAD_PROBE_IMAGES` spread over the dataset, after one untimed batch."""
    n = len(dataset)
    if n == 0:
        return 0.0
    count = min(LOAD_PROBE_IMAGES, n)
    generator = torch.Generator().manual_seed(0)
    batches = [torch.randint(n, (count,), generator=generator).numpy() for _ in range(4)]
    seconds = []
    for i, items in enumerate(batches):
        start = time.perf_counter()
        dataset.images(items, augment=augment, generator=generator)
        if i:
            seconds.append((time.perf_counter() - start) / count)
    return statistics.median(seconds)


def _time_store_round_trip(root: Path) -> float:
    store = ArtifactStore(root)
    artifact = Artifact({"codes": torch.zeros(64, 32, dtype=torch.int8)}, {"probe": True})
    start = time.perf_counter()
    store.save("probe", "0" * 64, artifact)
    store.load("probe", "0" * 64)
    return time.perf_counter() - start


@functools.lru_cache(maxsize=8)
def stage_overhead_s(results_root: str | None = None) -> float:
    """Seconds a stage spends besides its network: twice a small artifact's save-and-load round trip
    (the artifact, then the timing line and the record, each written and synced), measured on the
    disk of ``results_root`` (the median of three)."""
    with _temporary_folder(results_root) as tmp:
        seconds = [_time_store_round_trip(Path(tmp) / str(i)) for i in range(3)]
    return 2 * statistics.median(seconds)


def _temporary_folder(results_root: str | None) -> tempfile.TemporaryDirectory:
    """A temporary folder on the results' disk (the system's when that folder does not exist yet)."""
    parent = Path(results_root) if results_root else None
    if parent is not None and not parent.is_dir():
        parent = None
    return tempfile.TemporaryDirectory(prefix=".hashbench-probe-", dir=parent)


#: a record-sized JSON value (a cell's record is about 12 kB: metrics, curves, parameters, provenance)
_RECORD_PROBE = {"curve": [i / 7 for i in range(400)], "params": {f"p{i}": {"value": i, "default": [i, i]} for i in range(80)}}


@functools.lru_cache(maxsize=8)
def record_write_s(results_root: str | None = None) -> float:
    """Seconds the runner takes to write one cell's record (JSON, synced, renamed) on the disk of
    ``results_root``: the median of three."""
    with _temporary_folder(results_root) as tmp:
        seconds = []
        for i in range(3):
            start = time.perf_counter()
            write_json_atomic(Path(tmp) / f"{i}.json", _RECORD_PROBE)
            seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


#: queries an :func:`evaluate_seconds` probe ranks at most (the time scales with the queries)
EVALUATE_PROBE_QUERIES = 64


@functools.lru_cache(maxsize=64)
def evaluate_seconds(queries: int, database: int, bits: int, classes: int, topk: int | None, pn: Sequence[int],
                     radius: int) -> float:
    """Seconds of an evaluate stage's metrics (MAP, t-MAP, PR curve, P@N, R@N, precision within
    ``radius``) for a split of these sizes: :func:`~hashbench.retrieval.metrics.retrieval_metrics` on random
    codes and labels, timed after one untimed call, at most :data:`EVALUATE_PROBE_QUERIES`
    queries and scaled to ``queries``.  ``pn`` must be a tuple (the result is cached)."""
    if queries == 0 or database == 0:
        return 0.0
    probe = min(queries, EVALUATE_PROBE_QUERIES)
    generator = torch.Generator().manual_seed(0)
    query_codes = torch.randint(0, 2, (probe, bits), generator=generator, dtype=torch.int8) * 2 - 1
    db_codes = torch.randint(0, 2, (database, bits), generator=generator, dtype=torch.int8) * 2 - 1
    labels = torch.rand(probe + database, max(1, classes), generator=generator) < 2 / max(2, classes)
    query_labels, db_labels = labels[:probe].float(), labels[probe:].float()
    seconds = []
    for _ in range(2):
        start = time.perf_counter()
        retrieval_metrics(query_codes, db_codes, query_labels, db_labels, topk=topk, pn=pn, radius=radius,
                          target_labels=query_labels)
        seconds.append(time.perf_counter() - start)
    return seconds[-1] * queries / probe


@functools.lru_cache(maxsize=1)
def first_optimiser_s() -> float:
    """Seconds this process's first optimiser took to build: torch imports its compiler stack
    then (about 0.8 s on this project's 2-core CPU), which every run pays once, in its first
    training stage.  Call it before anything else builds an optimiser; afterwards it reads about 0."""
    start = time.perf_counter()
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.0)
    return time.perf_counter() - start
