"""What the stage functions share: the run context, seeding, mixed precision, models in and out of
artifacts, and the attack context both prepare and attack stages build."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch

from hashbench import plugins
from hashbench.api.attack import AttackContext
from hashbench.api.dataset import HashDataset
from hashbench.data.splits import Split
from hashbench.errors import PluginError
from hashbench.harness.stages.spec import DatasetSpec, PluginSpec, Stage
from hashbench.harness.store import Artifact
from hashbench.models.hash_model import HashModel
from hashbench.models.purifier import PurifiedModel
from hashbench.progress import Reporter
from hashbench.retrieval.training import TrainData

#: the autocast dtype of each ``--amp`` choice
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class StageContext:
    """Shared by the stage functions of one run: device, progress, loaded datasets and artifacts.

    ``datasets`` is keyed by :attr:`DatasetSpec.key` (the planner's opened datasets can be passed
    in); ``channels_last`` puts models in channels-last memory format.
    """

    device: torch.device
    reporter: Reporter
    artifact: Callable[[Stage], Artifact]
    datasets: dict[str, HashDataset] = field(default_factory=dict)
    channels_last: bool = False

    def dataset(self, spec: DatasetSpec) -> HashDataset:
        if spec.key not in self.datasets:
            self.datasets[spec.key] = plugins.datasets.create(spec.type or spec.name, dict(spec.params))
        return self.datasets[spec.key]

    def place(self, model: HashModel) -> HashModel:
        """``model`` on the device, in channels-last format when asked."""
        model = model.to(self.device)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model


def autocast(device: torch.device, amp: str | None) -> contextlib.AbstractContextManager:
    """Mixed-precision autocast for ``amp`` ("bf16" or "fp16"); a no-op for ``None``."""
    if amp is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=AMP_DTYPES[amp])


def seeded_generator(seed: int) -> torch.Generator:
    """A generator seeded with ``seed``; the global generator is seeded too (dropout and
    initialisation draw from it)."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def split_of(ctx: StageContext, split_stage: Stage) -> tuple[HashDataset, Split]:
    """The dataset and the split a split stage drew."""
    art = ctx.artifact(split_stage)
    return ctx.dataset(split_stage.spec.dataset), Split.from_tensors(art.tensors, art.meta["seed"])


def item_labels(dataset: HashDataset, indices: np.ndarray, device: torch.device) -> torch.Tensor:
    """The multi-hot labels of dataset items, float32 on ``device``."""
    return torch.as_tensor(dataset.labels[indices], dtype=torch.float32, device=device)


def training_data(ctx: StageContext, split_stage: Stage) -> TrainData:
    """The training items of a split stage, with their labels on the device."""
    dataset, split = split_of(ctx, split_stage)
    return TrainData(dataset, split.train, item_labels(dataset, split.train, ctx.device))


def build_model(backbone: PluginSpec, bits: int, image_size: int, *, pretrained: bool = True,
                method: PluginSpec | None = None) -> HashModel:
    """The hash model of a backbone and code length; ``pretrained=False`` skips loading ImageNet
    weights (used when the stored weights are loaded right after).  The ``method``'s
    ``hash_init``, where it has one, starts the hash layer."""
    params = dict(backbone.params)
    if not pretrained and "pretrained" in params:
        params["pretrained"] = "none"
    net = plugins.backbones.create(backbone.name, params).build(image_size)
    hash_init = (method.params if method is not None else {}).get("hash_init", "normal_0.01")
    return HashModel(net, bits, hash_init=hash_init)


def prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors stored under ``prefix`` (``model.``, ``method.``…), with the prefix taken off."""
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def load_model(ctx: StageContext, model_stage: Stage) -> HashModel:
    """Rebuild a trained (or defended) model from its artifact, in eval mode on the device.

    An inference-time defense's artifact names its defense plugin in ``meta["purifier"]``: the
    purifier is rebuilt by that plugin, loaded from the ``purifier.`` tensors and put in front of
    the hash model (:class:`~hashbench.models.purifier.PurifiedModel`)."""
    art = ctx.artifact(model_stage)
    stored = art.meta["model_spec"]
    model = build_model(PluginSpec.from_json(stored["backbone"]), stored["bits"], art.meta["image_size"],
                        pretrained=False)
    model.load_state_dict(prefixed(art.tensors, "model."))
    purified = art.meta.get("purifier")
    if purified is not None:
        defense = plugins.defenses.create(purified["defense"], purified["params"])
        purifier = defense.build_purifier()
        purifier.load_state_dict(prefixed(art.tensors, "purifier."))
        model = PurifiedModel(purifier, model, attack_sees_purifier=purified["attack_sees_purifier"])
    return ctx.place(model).eval()


def method_state(art: Artifact) -> dict[str, torch.Tensor]:
    """The hashing method's state (code banks, centers…) stored with a model."""
    return prefixed(art.tensors, "method.")


def model_artifact(model: HashModel, method, meta: dict[str, Any]) -> Artifact:
    """The weights of ``model`` under ``model.`` (a purified model: its hash model's, and its
    purifier's under ``purifier.``) and the method's state under ``method.``."""
    hash_model = model.hash_model if isinstance(model, PurifiedModel) else model
    tensors = {f"model.{k}": v for k, v in hash_model.state_dict().items()}
    if isinstance(model, PurifiedModel):
        tensors.update({f"purifier.{k}": v for k, v in model.purifier.state_dict().items()})
    tensors.update({f"method.{k}": v for k, v in method.state_tensors().items()})
    return Artifact(tensors, meta)


def backward_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None) -> None:
    """``zero_grad``, backward and step, through ``scaler`` under fp16 (loss scaling)."""
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        optimizer.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()


@contextlib.contextmanager
def blame(kind: str, plugin: PluginSpec, call: str) -> Iterator[None]:
    """An exception raised inside plugin code fails the stage naming the plugin and its distribution."""
    try:
        yield
    except Exception as exc:
        dist, version = plugin.origin
        raise PluginError(f"{kind} '{plugin.name}' ({dist} {version}) raised {type(exc).__name__} "
                          f"in {call}: {exc}") from exc


def attack_context(ctx: StageContext, inputs: Mapping[str, Stage], attack, generator: torch.Generator) -> AttackContext:
    """The context an attack gets, from a stage's ``split``, ``encode`` and (optional) ``prepare`` inputs."""
    dataset, split = split_of(ctx, inputs["split"])
    codes = ctx.artifact(inputs["encode"]).tensors
    state = ctx.artifact(inputs["prepare"]).tensors if "prepare" in inputs else {}
    train_labels = item_labels(dataset, split.train, ctx.device)
    return AttackContext(
        db_codes=codes["database"].float().to(ctx.device),
        db_labels=item_labels(dataset, split.database, ctx.device),
        train_codes=codes["train"].float().to(ctx.device),
        train_labels=train_labels,
        epsilon=attack.params.epsilon, device=ctx.device, generator=generator, state=dict(state),
        train_data=TrainData(dataset, split.train, train_labels), reporter=ctx.reporter,
    )
