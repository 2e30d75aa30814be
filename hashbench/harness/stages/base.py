"""What one stage kind is, in one place: its spec, what it computes, what it costs."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, TypeVar

from hashbench.harness.flops import plugin_param, train_stage
from hashbench.harness.sizes import Sizes
from hashbench.harness.stages.context import StageContext
from hashbench.harness.stages.spec import PluginSpec, Stage, StageSpec
from hashbench.harness.store import Artifact
from hashbench.retrieval.codes import ENCODE_BATCH


@dataclass(frozen=True)
class Work:
    """The network a stage runs and how: its backbone, batch and rate mode ("train" or "infer")."""

    backbone: object  # the PluginSpec of the backbone
    batch: int
    mode: str


_T = TypeVar("_T")


def of_model(cost: Callable[[Stage, Sizes, Stage], _T]) -> Callable[[Stage, Sizes | None], _T | None]:
    """A cost of a stage that runs a model, computed with that model's train stage (its backbone
    and bits); ``None`` when the sizes are unknown or the stage has no model."""

    @functools.wraps(cost)
    def priced(stage: Stage, sizes: Sizes | None) -> _T | None:
        train = train_stage(stage)
        return None if sizes is None or train is None else cost(stage, sizes, train)

    return priced


def batches_of(train: Stage, plugin: PluginSpec | None, items: int, mode: str = "train") -> Work:
    """The model of ``train`` run over ``items`` images in the plugin's ``batch_size`` (default 32;
    no plugin: the encoding batch)."""
    batch = ENCODE_BATCH if plugin is None else plugin_param(plugin, "batch_size", 32)
    return Work(train.spec.backbone, max(1, min(batch, items)), mode)


def _nothing(stage: Stage, sizes: Sizes) -> None:
    return None


def _no_images(stage: Stage, sizes: Sizes) -> tuple[int, bool]:
    return 0, False


@dataclass(frozen=True)
class StageKind:
    """A stage kind: its spec class, the function that computes its artifact, and its cost model.

    ``flops(stage, sizes)``: the model FLOPs of the stage (``None`` when unknown);
    ``bytes(stage, sizes)``: about what its artifact takes on disk (``None`` when unknown);
    ``work(stage, sizes)``: the network whose measured rate prices its FLOPs on a first run
    (``None``: the matrix-multiply rate); ``images_read(stage, sizes)``: (images it reads from its
    dataset, whether augmented).  ``gpu``: it runs networks (an accelerator helps); ``trains``: it
    builds an optimiser; ``sink``: no stage reads its artifact (not kept in the artifact cache).
    """

    spec: type[StageSpec]
    run: Callable[[StageContext, Stage], Artifact]
    flops: Callable[[Stage, Sizes | None], int | None]
    bytes: Callable[[Stage, Sizes | None], int | None]
    work: Callable[[Stage, Sizes], Work | None] = _nothing
    images_read: Callable[[Stage, Sizes], tuple[int, bool]] = _no_images
    gpu: bool = False
    trains: bool = False
    sink: bool = False

    @property
    def name(self) -> str:
        return self.spec.kind


#: bytes every artifact adds to its tensors: manifest, metadata, safetensors headers (about)
ARTIFACT_OVERHEAD = 4096
#: an evaluate or chance artifact: metrics, curves and example rankings, all small (about)
SMALL_ARTIFACT = 64 * 1024
