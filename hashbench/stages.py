"""What each stage computes.  Every function takes the run context and a planned stage and
returns the artifact to store; inputs are fetched through ``ctx.artifact``."""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import torch

from . import registries
from .attack import AttackContext
from .chance import chance_map, code_health
from .codes import ENCODE_BATCH, to_binary
from .data.base import HashDataset
from .data.splits import Split, make_split, own_split
from .defense import DefenseContext
from .errors import DataError, PluginError
from .metrics import DEFAULT_RADIUS, retrieval_metrics
from .models.hash_model import HashModel
from .models.purifier import PurifiedModel, attacked_model
from .plan import Stage, dataset_key
from .progress import Reporter
from .store import Artifact
from .training import TrainData, run_epochs, to_device

EXAMPLES = 4
#: database items kept per example query (the report shows them before and after the attack)
EXAMPLE_TOP = 10
#: longest side, in pixels, of the stored thumbnails of those items
THUMBNAIL = 64
#: slack for float rounding when checking that an attack stayed inside its ε-ball
BUDGET_TOLERANCE = 1e-5


@dataclass
class StageContext:
    """Shared by the stage functions of one run: device, progress, loaded datasets and artifacts.

    ``datasets`` is keyed by :func:`hashbench.plan.dataset_key` (the planner's opened datasets
    can be passed in); ``channels_last`` puts models in channels-last memory format.
    """

    device: torch.device
    reporter: Reporter
    artifact: Callable[[Stage], Artifact]
    datasets: dict[str, HashDataset] = field(default_factory=dict)
    channels_last: bool = False

    def dataset(self, spec: dict[str, Any]) -> HashDataset:
        key = dataset_key(spec)
        if key not in self.datasets:
            self.datasets[key] = registries.datasets.create(spec.get("type") or spec["name"], spec["params"])
        return self.datasets[key]

    def place(self, model: HashModel) -> HashModel:
        """``model`` on the device, in channels-last format when asked."""
        model = model.to(self.device)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model


#: the autocast dtype of each ``--amp`` choice
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, amp: str | None) -> contextlib.AbstractContextManager:
    """Mixed-precision autocast for ``amp`` ("bf16" or "fp16"); a no-op for ``None``."""
    if amp is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=AMP_DTYPES[amp])


def _seeded(seed: int) -> torch.Generator:
    torch.manual_seed(seed)  # dropout and initialisation draw from the global generator
    return torch.Generator().manual_seed(seed)


def _split_of(ctx: StageContext, split_stage: Stage) -> tuple[HashDataset, Split]:
    art = ctx.artifact(split_stage)
    return ctx.dataset(split_stage.spec["dataset"]), Split.from_tensors(art.tensors, art.meta["seed"])


def _labels(dataset: HashDataset, indices: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(dataset.labels[indices], dtype=torch.float32, device=device)


def build_model(train_spec: dict[str, Any], image_size: int, *, pretrained: bool = True) -> HashModel:
    """The hash model of a train stage's spec; ``pretrained=False`` skips loading ImageNet weights
    (used when the stored weights are loaded right after).  The method's ``hash_init``, where it
    has one, starts the hash layer."""
    backbone = train_spec["backbone"]
    params = dict(backbone["params"])
    if not pretrained and "pretrained" in params:
        params["pretrained"] = "none"
    net = registries.backbones.create(backbone["name"], params).build(image_size)
    hash_init = (train_spec.get("method") or {}).get("params", {}).get("hash_init", "normal_0.01")
    return HashModel(net, train_spec["bits"], hash_init=hash_init)


def _prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def load_model(ctx: StageContext, model_stage: Stage) -> HashModel:
    """Rebuild a trained (or defended) model from its artifact, in eval mode on the device.

    An inference-time defense's artifact names its defense plugin in ``meta["purifier"]``: the
    purifier is rebuilt by that plugin, loaded from the ``purifier.`` tensors and put in front of
    the hash model (:class:`~hashbench.models.purifier.PurifiedModel`)."""
    art = ctx.artifact(model_stage)
    model = build_model(art.meta["model_spec"], art.meta["image_size"], pretrained=False)
    model.load_state_dict(_prefixed(art.tensors, "model."))
    purified = art.meta.get("purifier")
    if purified is not None:
        defense = registries.defenses.create(purified["defense"], purified["params"])
        purifier = defense.build_purifier()
        purifier.load_state_dict(_prefixed(art.tensors, "purifier."))
        model = PurifiedModel(purifier, model, attack_sees_purifier=purified["attack_sees_purifier"])
    return ctx.place(model).eval()


def _model_artifact(model: HashModel, method, meta: dict[str, Any]) -> Artifact:
    """The weights of ``model`` under ``model.`` (a purified model: its hash model's, and its
    purifier's under ``purifier.``) and the method's state under ``method.``."""
    hash_model = model.hash_model if isinstance(model, PurifiedModel) else model
    tensors = {f"model.{k}": v for k, v in hash_model.state_dict().items()}
    if isinstance(model, PurifiedModel):
        tensors.update({f"purifier.{k}": v for k, v in model.purifier.state_dict().items()})
    tensors.update({f"method.{k}": v for k, v in method.state_tensors().items()})
    return Artifact(tensors, meta)


# --- stages ---------------------------------------------------------------------------

def run_split(ctx: StageContext, stage: Stage) -> Artifact:
    dataset = ctx.dataset(stage.spec["dataset"])
    planned, found = stage.spec.get("fingerprint"), dataset.fingerprint()
    if planned != found:  # the files changed between planning and now: the key would lie
        raise DataError(f"dataset '{stage.spec['dataset']['name']}' changed since the run was planned "
                        f"(fingerprint {planned} → {found}); start the run again")
    sizes = stage.spec["split"]
    draw = sizes.get("mode") == "draw"
    targets = sizes.get("targets", {})  # the grid's TargetSpec when not the default
    split = make_split(dataset, num_query=sizes["num_query"], num_train=sizes["num_train"],
                       num_database=sizes.get("num_database"), seed=stage.spec["seed"], draw=draw,
                       target_min_count=targets.get("min_count", 1), target_zero_label=targets.get("zero_label", False))
    meta = {"seed": split.seed, "hash": split.hash(), "fingerprint": found, "sizes": {
        "train": len(split.train), "query": len(split.query), "database": len(split.database)},
        "source": "files" if own_split(dataset, draw) is not None else "drawn"}
    return Artifact(split.to_tensors(), meta)


def run_chance(ctx: StageContext, stage: Stage) -> Artifact:
    """The MAP (and t-MAP against the split's targets) of random balanced codes on this split."""
    spec = stage.spec
    dataset, split = _split_of(ctx, stage.inputs["split"])
    start = time.perf_counter()
    figures = chance_map(dataset.labels[split.query], dataset.labels[split.database], spec["bits"],
                         topk=spec["map_topk"], draws=spec["draws"], seed=spec["seed"],
                         target_labels=split.target_labels)
    return Artifact({}, {"chance": figures, "wall_s": time.perf_counter() - start})


def run_pretrain(ctx: StageContext, stage: Stage) -> Artifact:
    """The backbone's supervised warm start (``BackboneParams``): a linear head classifies the
    training split's labels (binary cross-entropy), Adam with a cosine decay; only the backbone
    is kept."""
    spec = stage.spec
    generator = _seeded(spec["seed"])
    dataset, split = _split_of(ctx, stage.inputs["split"])
    data = TrainData(dataset, split.train, _labels(dataset, split.train, ctx.device))
    classes = data.labels.shape[1]
    model = build_model({"backbone": spec["backbone"], "bits": classes}, dataset.image_size)
    # a classifier head at nn.Linear's own scale: the hash layer's N(0, 0.01²) start starves the
    # backbone's gradient early on (on shapes its loss was twice as high after 20 epochs)
    model.hash_layer.reset_parameters()
    model = ctx.place(model)
    p = spec["backbone"]["params"]
    epochs, lr = p["pretrain_epochs"], p["pretrain_lr"]
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    amp = spec.get("amp")
    scaler = torch.amp.GradScaler(ctx.device.type) if amp == "fp16" else None

    def before_epoch(epoch: int) -> None:
        for group in optimizer.param_groups:
            group["lr"] = 0.5 * lr * (1 + math.cos(math.pi * epoch / epochs))

    def step(x: torch.Tensor, y: torch.Tensor, pos: torch.Tensor) -> dict[str, torch.Tensor]:
        model.train()
        with autocast(ctx.device, amp):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model.logits(x).float(), y)
        _backward_step(loss, optimizer, scaler)
        return {"loss": loss.detach().float()}

    start = time.perf_counter()
    history = run_epochs(data, step, epochs=epochs, batch_size=p["pretrain_batch_size"], augment=True,
                         generator=generator, device=ctx.device, before_epoch=before_epoch,
                         reporter=ctx.reporter, description=f"pretrain {spec['backbone']['name']}")
    tensors = {f"backbone.{k}": v for k, v in model.backbone.state_dict().items()}
    return Artifact(tensors, {"history": history, "classes": classes, "wall_s": time.perf_counter() - start})


def _backward_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None) -> None:
    """``zero_grad``, backward and step, through ``scaler`` under fp16 (loss scaling)."""
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        optimizer.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()


def run_train(ctx: StageContext, stage: Stage) -> Artifact:
    spec = stage.spec
    generator = _seeded(spec["seed"])
    dataset, split = _split_of(ctx, stage.inputs["split"])
    model = build_model(spec, dataset.image_size, pretrained="pretrain" not in stage.inputs)
    if "pretrain" in stage.inputs:  # the warm start replaces the backbone's initial weights
        warm = ctx.artifact(stage.inputs["pretrain"]).tensors
        model.backbone.load_state_dict({k[len("backbone."):]: v for k, v in warm.items() if k.startswith("backbone.")})
    model = ctx.place(model)
    method = registries.methods.create(spec["method"]["name"], spec["method"]["params"])
    amp = spec.get("amp")
    scaler = torch.amp.GradScaler(ctx.device.type) if amp == "fp16" else None  # fp16 needs loss scaling
    data = TrainData(dataset, split.train, _labels(dataset, split.train, ctx.device))
    method.setup(len(data), spec["bits"], data.labels, ctx.device)
    optimizer = method.optimizer(model.parameters())
    p = method.params

    def before_epoch(epoch: int) -> None:
        for group in optimizer.param_groups:
            group["lr"] = method.lr_at_epoch(epoch)
        method.on_epoch_start(epoch)

    def step(x: torch.Tensor, y: torch.Tensor, pos: torch.Tensor) -> dict[str, torch.Tensor]:
        model.train()
        with autocast(ctx.device, amp):
            loss = method.loss(model(x), y, pos)
        _backward_step(loss, optimizer, scaler)
        return {"loss": loss.detach().float()}

    start = time.perf_counter()
    history = run_epochs(data, step, epochs=p.epochs, batch_size=p.batch_size, augment=p.augment,
                         generator=generator, device=ctx.device, before_epoch=before_epoch,
                         reporter=ctx.reporter, description=f"train {spec['method']['name']}")
    model.eval()
    meta = {"model_spec": {k: spec[k] for k in ("backbone", "bits")}, "image_size": dataset.image_size,
            "history": history, "wall_s": time.perf_counter() - start}
    return _model_artifact(model, method, meta)


def run_defend(ctx: StageContext, stage: Stage) -> Artifact:
    spec = stage.spec
    generator = _seeded(spec["seed"])
    dataset, split = _split_of(ctx, stage.inputs["split"])
    clean = ctx.artifact(stage.inputs["model"])
    model = load_model(ctx, stage.inputs["model"])
    method = registries.methods.create(spec["method"]["name"], spec["method"]["params"])
    method.load_state_tensors({k[len("method."):]: v for k, v in clean.tensors.items() if k.startswith("method.")})
    defense = registries.defenses.create(spec["defense"]["name"], spec["defense"]["params"])
    data = TrainData(dataset, split.train, _labels(dataset, split.train, ctx.device))
    start = time.perf_counter()
    with autocast(ctx.device, spec.get("amp")):  # fp16 defenses run without loss scaling: prefer bf16
        with _blame("defense", spec["defense"], "fit"):
            model, log = defense.fit(model, method, data, DefenseContext(ctx.device, generator, ctx.reporter))
    model.eval()
    meta = {**{k: clean.meta[k] for k in ("model_spec", "image_size")}, "log": log,
            "wall_s": time.perf_counter() - start}
    if isinstance(model, PurifiedModel):  # how load_model rebuilds the purifier
        meta["purifier"] = {"defense": spec["defense"]["name"], "params": spec["defense"]["params"],
                            "attack_sees_purifier": model.attack_sees_purifier}
    return _model_artifact(model, method, meta)


@torch.no_grad()
def _encode(model: HashModel, count: int, images: Callable[[slice], torch.Tensor], device: torch.device,
            advance: Callable[[int], None]) -> torch.Tensor:
    """int8 ±1 codes of ``count`` images that ``images(slice)`` gives :data:`ENCODE_BATCH` at a time (eval mode)."""
    model.eval()
    codes = []
    for start in range(0, count, ENCODE_BATCH):
        batch = images(slice(start, start + ENCODE_BATCH))
        codes.append(to_binary(model(to_device(batch, device))).cpu())
        advance(batch.shape[0])
    return torch.cat(codes) if codes else torch.zeros(0, model.bits, dtype=torch.int8)


def encode_images(model: HashModel, dataset: HashDataset, indices: np.ndarray, device: torch.device,
                  advance: Callable[[int], None] = lambda n: None) -> torch.Tensor:
    """int8 ±1 codes of dataset items (eval mode, no augmentation)."""
    return _encode(model, len(indices), lambda part: dataset.images(indices[part]), device, advance)


def run_encode(ctx: StageContext, stage: Stage) -> Artifact:
    dataset, split = _split_of(ctx, stage.inputs["split"])
    model = load_model(ctx, stage.inputs["model"])
    start = time.perf_counter()
    total = len(split.database) + len(split.train) + len(split.query)
    with ctx.reporter.task("encode", total) as advance:
        tensors = {name: encode_images(model, dataset, getattr(split, name), ctx.device, advance)
                   for name in ("database", "train", "query")}
    # the model's code health, once per model (every evaluation of it copies it into its record)
    return Artifact(tensors, {"wall_s": time.perf_counter() - start, "code_health": code_health(tensors["database"])})


def _attack_context(ctx: StageContext, stage: Stage, attack, generator: torch.Generator) -> AttackContext:
    dataset, split = _split_of(ctx, stage.inputs["split"])
    codes = ctx.artifact(stage.inputs["encode"]).tensors
    state = ctx.artifact(stage.inputs["prepare"]).tensors if "prepare" in stage.inputs else {}
    train_labels = _labels(dataset, split.train, ctx.device)
    return AttackContext(
        db_codes=codes["database"].float().to(ctx.device),
        db_labels=_labels(dataset, split.database, ctx.device),
        train_codes=codes["train"].float().to(ctx.device),
        train_labels=train_labels,
        epsilon=attack.params.epsilon, device=ctx.device, generator=generator, state=dict(state),
        train_data=TrainData(dataset, split.train, train_labels), reporter=ctx.reporter,
    )


def run_prepare(ctx: StageContext, stage: Stage) -> Artifact:
    spec = stage.spec
    generator = _seeded(spec["seed"])
    attack = registries.attacks.create(spec["attack"]["name"], spec["attack"]["params"])
    model = load_model(ctx, stage.inputs["model"])
    for p in model.parameters():
        p.requires_grad_(False)
    start = time.perf_counter()
    with autocast(ctx.device, spec.get("amp")):
        with _blame("attack", spec["attack"], "prepare"):
            state = attack.prepare(attacked_model(model), _attack_context(ctx, stage, attack, generator)) or {}
    return Artifact(state, {"wall_s": time.perf_counter() - start})


@contextlib.contextmanager
def _blame(kind: str, plugin: dict[str, Any], call: str) -> Iterator[None]:
    """An exception raised inside plugin code fails the stage naming the plugin and its distribution."""
    try:
        yield
    except Exception as exc:
        dist, version = plugin.get("origin") or ("unknown", "unknown")
        raise PluginError(f"{kind} '{plugin['name']}' ({dist} {version}) raised {type(exc).__name__} "
                          f"in {call}: {exc}") from exc


def _check_batch(name: str, origin: list[str], bounded: bool, x: torch.Tensor, x_adv: Any, epsilon: float) -> None:
    who = f"attack '{name}' ({origin[0]} {origin[1]})"
    if not isinstance(x_adv, torch.Tensor) or x_adv.shape != x.shape:
        shape = tuple(x_adv.shape) if isinstance(x_adv, torch.Tensor) else type(x_adv).__name__
        raise PluginError(f"{who} returned {shape} for a batch of shape {tuple(x.shape)}")
    if not torch.isfinite(x_adv).all():
        raise PluginError(f"{who} returned non-finite values")
    lo, hi = float(x_adv.min()), float(x_adv.max())
    if lo < -BUDGET_TOLERANCE or hi > 1 + BUDGET_TOLERANCE:
        raise PluginError(f"{who} returned values in [{lo:.4f}, {hi:.4f}], outside [0, 1]")
    linf = float((x_adv - x).abs().max())
    if bounded and linf > epsilon + BUDGET_TOLERANCE:
        raise PluginError(f"{who} exceeded its budget: L∞ {linf:.5f} > ε {epsilon:.5f}")


def _attack_queries(ctx: StageContext, stage: Stage, *, keep_images: bool) -> Artifact:
    """Run the stage's attack on every query of its split: the loop of both ``attack`` and ``craft``.

    Each batch is crafted on what the attacker sees (an oblivious attacker: the bare hash model)
    and checked (:func:`_check_batch`).  The artifact holds the per-query perturbation norms, a few
    example images and either the system's codes of the adversarial queries (``query_codes``,
    an attack stage) or the adversarial images themselves, float32 (``images``, a craft stage,
    which other models encode later).
    """
    spec = stage.spec
    generator = _seeded(spec["seed"])
    name = spec["attack"]["name"]
    attack = registries.attacks.create(name, spec["attack"]["params"])
    dataset, split = _split_of(ctx, stage.inputs["split"])
    model = load_model(ctx, stage.inputs["model"])
    for p in model.parameters():
        p.requires_grad_(False)
    actx = _attack_context(ctx, stage, attack, generator)
    query_labels = _labels(dataset, split.query, ctx.device)
    targets = torch.as_tensor(split.target_labels, dtype=torch.float32, device=ctx.device)
    batch_size = attack.params.batch_size
    outputs, linf, l2, mse, examples = [], [], [], [], {}
    start = time.perf_counter()
    with ctx.reporter.task(f"{stage.kind} {name}", len(split.query)) as advance:
        for lo in range(0, len(split.query), batch_size):
            sl = slice(lo, lo + batch_size)
            x = to_device(dataset.images(split.query[sl]), ctx.device)
            target = targets[sl] if attack.targeted else None
            with autocast(ctx.device, spec.get("amp")):  # attacks stay fp32 unless --amp-attacks
                with _blame("attack", spec["attack"], "perturb"):
                    # crafted on what the attacker sees (an oblivious one: the bare hash model), encoded by the system
                    x_adv = attack.perturb(attacked_model(model), x, query_labels[sl], target, actx)
            _check_batch(name, spec["attack"]["origin"], attack.bounded, x, x_adv, attack.params.epsilon)
            x_adv = x_adv.detach().clamp(0, 1)
            if keep_images:
                outputs.append(x_adv.float().cpu())
            else:
                with torch.no_grad():
                    outputs.append(to_binary(model(x_adv)).cpu())
            delta = (x_adv - x).flatten(1)
            linf.append(delta.abs().amax(1).cpu())
            l2.append(delta.norm(dim=1).cpu())
            mse.append(delta.pow(2).mean(1).cpu())
            if lo == 0:
                examples = {"examples_clean": (x[:EXAMPLES] * 255).round().to(torch.uint8).cpu(),
                            "examples_adv": (x_adv[:EXAMPLES] * 255).round().to(torch.uint8).cpu()}
            advance(x.shape[0])
    tensors = {"images" if keep_images else "query_codes": torch.cat(outputs), "linf": torch.cat(linf),
               "l2": torch.cat(l2), "mse": torch.cat(mse), **examples}
    meta = {"wall_s": time.perf_counter() - start, "targeted": attack.targeted, "bounded": attack.bounded,
            "epsilon": attack.params.epsilon, "perturbation": perturbation_summary(tensors)}
    return Artifact(tensors, meta)


def run_attack(ctx: StageContext, stage: Stage) -> Artifact:
    """White-box: the attack crafted on the model it attacks; the system's codes of its queries."""
    return _attack_queries(ctx, stage, keep_images=False)


def run_craft(ctx: StageContext, stage: Stage) -> Artifact:
    """A surrogate's attack (the same spec and inputs as its attack stage), keeping the adversarial
    images for the transfer stages of the other models."""
    return _attack_queries(ctx, stage, keep_images=True)


#: what a transfer stage copies from its craft stage into its attack-shaped artifact
_CRAFT_COPIED = ("linf", "l2", "mse", "examples_clean", "examples_adv")


def run_transfer(ctx: StageContext, stage: Stage) -> Artifact:
    """Black-box transfer: the victim model (``load_model`` puts an inference-time defense's purifier
    in front) encodes the images a surrogate's attack crafted.  The artifact has an attack stage's
    form (``query_codes``, the craft's norms and examples), so :func:`run_evaluate` reads it unchanged."""
    craft = ctx.artifact(stage.inputs["craft"])
    _, split = _split_of(ctx, stage.inputs["split"])
    images = craft.tensors["images"]
    if images.shape[0] != len(split.query):  # the planner gives both models one split: this is a broken store
        raise DataError(f"craft {stage.inputs['craft'].key[:12]} holds {images.shape[0]} images for a split of "
                        f"{len(split.query)} queries")
    model = load_model(ctx, stage.inputs["model"])
    start = time.perf_counter()
    with ctx.reporter.task(f"transfer {stage.spec['attack']['name']}", len(images)) as advance:
        codes = _encode(model, len(images), images.__getitem__, ctx.device, advance)
    tensors = {"query_codes": codes, **{k: craft.tensors[k] for k in _CRAFT_COPIED if k in craft.tensors}}
    meta = {**{k: craft.meta[k] for k in ("targeted", "bounded", "epsilon", "perturbation")},
            "craft_wall_s": craft.meta.get("wall_s"), "wall_s": time.perf_counter() - start}
    return Artifact(tensors, meta)


def perturbation_summary(tensors: dict[str, torch.Tensor]) -> dict[str, float]:
    """The records' perturbation figures from an attack artifact's per-query tensors (kept in its
    meta, so that writing a record reads no tensors)."""
    return {"linf_max": float(tensors["linf"].max()), "l2_mean": float(tensors["l2"].mean()),
            "mse_mean": float(tensors["mse"].mean())}


def run_evaluate(ctx: StageContext, stage: Stage) -> Artifact:
    spec = stage.spec
    dataset, split = _split_of(ctx, stage.inputs["split"])
    encode = ctx.artifact(stage.inputs["encode"])
    encoded = encode.tensors
    db_codes = encoded["database"]
    if spec["attack"] is None:
        query_codes = encoded["query"]
    else:
        query_codes = ctx.artifact(stage.inputs["codes"]).tensors["query_codes"]
    query_labels, db_labels = dataset.labels[split.query], dataset.labels[split.database]
    start = time.perf_counter()
    # clean: the t-MAP a targeted attack starts from
    targets = split.target_labels if spec["attack"] is None or spec["attack"]["targeted"] else None
    ranking = retrieval_metrics(query_codes, db_codes, query_labels, db_labels, topk=spec["map_topk"], pn=spec["pn"],
                                radius=spec.get("radius", DEFAULT_RADIUS), target_labels=targets)
    metrics: dict[str, Any] = {
        "map": ranking.pop("map"),
        "t_map": ranking.pop("t_map"),
        "map_topk": spec["map_topk"],
        "num_queries": len(split.query),
        "num_database": len(split.database),
        "chance": ctx.artifact(stage.inputs["chance"]).meta["chance"] if "chance" in stage.inputs else None,
        "code_health": encode.meta.get("code_health") or code_health(db_codes),  # older encode artifacts lack it
        **ranking,
    }
    metrics["examples"], thumbnails = _example_rankings(dataset, split, query_codes, db_codes)
    return Artifact({"examples_top": thumbnails}, {"metrics": metrics, "wall_s": time.perf_counter() - start})


def _example_rankings(dataset: HashDataset, split: Split, query_codes: torch.Tensor,
                      db_codes: torch.Tensor) -> tuple[dict[str, Any], torch.Tensor]:
    """The top :data:`EXAMPLE_TOP` database items of the first :data:`EXAMPLES` queries, for the report.

    Returns dataset indices (queries, retrieved items), the items' relevance to each query's true
    labels, and uint8 thumbnails of the retrieved items (longest side at most :data:`THUMBNAIL`),
    shaped ``queries × EXAMPLE_TOP × C × h × w``.  Hamming ranking, ties broken by database index.
    """
    q = query_codes[:EXAMPLES].float()
    distance = (db_codes.shape[1] - q @ db_codes.float().T) / 2
    order = torch.argsort(distance, dim=1, stable=True)[:, :EXAMPLE_TOP].numpy()
    top = split.database[order]
    relevant = (dataset.labels[split.query[: len(q)], None, :] * dataset.labels[top]).sum(-1) > 0
    images = dataset.images(top.reshape(-1))
    scale = THUMBNAIL / max(images.shape[-2:])
    if scale < 1:
        size = [max(1, round(side * scale)) for side in images.shape[-2:]]
        images = torch.nn.functional.interpolate(images, size=size, mode="bilinear", antialias=True)
    thumbnails = (images.clamp(0, 1) * 255).round().to(torch.uint8).reshape(*top.shape, *images.shape[1:])
    examples = {"queries": split.query[: len(q)].tolist(), "top": top.tolist(), "relevant": relevant.tolist()}
    return examples, thumbnails


EXECUTORS: dict[str, Callable[[StageContext, Stage], Artifact]] = {
    "split": run_split, "chance": run_chance, "pretrain": run_pretrain, "train": run_train, "defend": run_defend,
    "encode": run_encode, "prepare": run_prepare, "attack": run_attack, "craft": run_craft,
    "transfer": run_transfer, "evaluate": run_evaluate,
}
