"""Contract checks for attack and defense plugins: the sweep hashbench runs over every plugin.

hashbench's own test suite runs :func:`check_attack` and :func:`check_defense` over every
registered attack and defense, built-in or installed from another distribution.  Plugin
authors run the same checks in their own CI::

    from hashbench.testing import check_attack, check_defense, tiny_victim

    def test_my_attack_keeps_the_contract():
        check_attack("my-attack", tiny_victim())

    def test_my_defense_keeps_the_contract():
        check_defense("my-defense", tiny_victim(), params={"epochs": 1})

The victim is a small hash model (smallcnn, 16 bits, CSQ by default) trained in seconds on
CPU on the embedded ``shapes`` dataset, through the harness's own stage functions.  It learns little,
so the checks compare an attack's effect with the victim's own clean numbers, never with
paper values.  Each failed property raises an ``AssertionError`` whose message names the
plugin, its distribution and version, the property and what to change.

Parameters: by default a plugin runs with the ``smoke`` profile of ``registry.yaml``
(scaled-down iterations and epochs, resolved exactly as ``hashbench run --grid smoke``
resolves them); pass ``params=`` to choose them yourself (e.g. where no ``registry.yaml``
is at hand).
"""

from __future__ import annotations

import copy
import importlib.metadata as md
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch

from hashbench import plugins
from hashbench.api.attack import Attack, AttackContext, AttackParams
from hashbench.api.dataset import HashDataset
from hashbench.api.defense import Defense, DefenseContext
from hashbench.api.method import HashMethod
from hashbench.data.splits import Split
from hashbench.errors import HashbenchError, PluginError, UserError
from hashbench.harness.config import Config, DatasetDecl, Grid, Profile, RegistryConfig, SplitSpec, load_config
from hashbench.harness.plan import build_plan, derive_seed, resolved_values
from hashbench.harness.stages.attack import check_batch
from hashbench.harness.stages.context import (StageContext, attack_context, item_labels, load_model, method_state,
                                              seeded_generator)
from hashbench.harness.stages.kinds import KINDS
from hashbench.harness.stages.spec import Stage
from hashbench.harness.store import Artifact, canonical_json
from hashbench.models.hash_model import HashModel
from hashbench.models.purifier import PurifiedModel
from hashbench.progress import Reporter
from hashbench.retrieval.codes import encode_images, to_binary
from hashbench.retrieval.metrics import map_at_k
from hashbench.retrieval.training import TrainData

__all__ = [
    "AttackCheck", "DefenseCheck", "Victim", "check_attack", "check_defense", "profile_params", "tiny_victim",
]

#: the profile and grid whose parameters the sweep uses by default
SWEEP_PROFILE = "smoke"
SWEEP_GRID = "smoke"
_VICTIM_DATASET = "victim"


def profile_params(kind: str, name: str, *, profile: str = SWEEP_PROFILE, grid: str = SWEEP_GRID,
                   config: Config | None = None) -> dict[str, Any]:
    """The explicit parameters of plugin ``name`` (``kind``: "attacks", "defenses", …) under a profile.

    Resolved by the planner's own function: the profile's ``scale`` applied to the plugin's
    integer defaults, then the profile's and the grid's explicit values.  ``config`` defaults
    to the project's ``registry.yaml`` (or ``$HASHBENCH_REGISTRY``).
    """
    config = config if config is not None else load_config()
    spec = config.grid(grid)
    if not isinstance(spec, Grid):
        raise HashbenchError(f"grid '{grid}' is a union; name a cross-product grid for plugin parameters")
    return resolved_values(kind, name, config.profile(profile), spec, spec.datasets[0])  # its first dataset's values


# -- the victim -----------------------------------------------------------------------------

@dataclass
class Victim:
    """A trained hash model with its split, codes and clean retrieval numbers (treat as read-only).

    ``codes`` holds int8 ±1 codes of the ``database``, ``train`` and ``query`` items;
    ``clean_map`` is MAP@``map_topk`` of the clean queries against their true labels,
    ``clean_t_map`` the same against the split's target labels (what targeted attacks raise).
    """

    dataset: HashDataset
    split: Split
    method: str
    method_params: dict[str, Any]
    codes: dict[str, torch.Tensor]
    map_topk: int | None
    clean_map: float
    clean_t_map: float
    device: torch.device
    _ctx: StageContext = field(repr=False)
    _stages: dict[str, Stage] = field(repr=False)

    def model(self, *, frozen: bool = True) -> HashModel:
        """A fresh copy of the trained model in eval mode, as the harness loads it for a stage."""
        model = load_model(self._ctx, self._stages["train"])
        for p in model.parameters():
            p.requires_grad_(not frozen)
        return model

    def hash_method(self) -> HashMethod:
        """A fresh instance of the victim's hashing method with its trained state (what a defense gets)."""
        method = plugins.methods.create(self.method, self.method_params)
        method.load_state_tensors(method_state(self._ctx.artifact(self._stages["train"])))
        return method

    def train_data(self) -> TrainData:
        return TrainData(self.dataset, self.split.train, item_labels(self.dataset, self.split.train, self.device))

    def attack_context(self, attack: Attack, generator: torch.Generator,
                       state: Mapping[str, torch.Tensor] | None = None) -> AttackContext:
        """The context the harness builds for ``attack`` (codes, labels, ε, training data…)."""
        inputs = {"split": self._stages["split"], "encode": self._stages["encode"]}
        ctx = attack_context(self._ctx, inputs, attack, generator)
        ctx.state = dict(state or {})
        return ctx

    def query_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(images, true labels, target labels) of the queries, ``batch_size`` at a time, on the device."""
        labels = item_labels(self.dataset, self.split.query, self.device)
        targets = torch.as_tensor(self.split.target_labels, dtype=torch.float32, device=self.device)
        for lo in range(0, len(self.split.query), batch_size):
            sl = slice(lo, lo + batch_size)
            yield self.dataset.images(self.split.query[sl]).to(self.device), labels[sl], targets[sl]

    def retrieval(self, query_codes: torch.Tensor) -> tuple[float, float]:
        """(MAP against the true labels, MAP against the target labels) of ``query_codes``."""
        labels = self.dataset.labels
        db, db_labels = self.codes["database"], labels[self.split.database]
        return (map_at_k(query_codes, db, labels[self.split.query], db_labels, topk=self.map_topk),
                map_at_k(query_codes, db, self.split.target_labels, db_labels, topk=self.map_topk))


_VICTIMS: dict[str, Victim] = {}


def tiny_victim(*, method: str = "csq", method_params: Mapping[str, Any] | None = None, bits: int = 16,
                num_items: int = 240, num_classes: int = 4, shapes_per_image: int = 1, num_query: int = 32,
                num_train: int = 120, map_topk: int | None = 100, width: int = 8, seed: int = 0,
                device: str | torch.device = "cpu") -> Victim:
    """A small trained victim, built (once per argument set and process) by the harness's stages.

    The data is the embedded ``shapes`` dataset at 32×32 (``num_items`` images of
    ``shapes_per_image`` shapes out of ``num_classes`` classes) split into ``num_query``
    queries and a database from which ``num_train`` training items are drawn; the model is a
    ``smallcnn`` of ``width`` channels with a ``bits``-bit hash layer trained with ``method``
    and ``method_params`` (default: CSQ, 20 epochs, batch 16, lr 0.05: about five seconds on
    one CPU core, clean MAP about 0.38 where chance is about 0.25).  CSQ is the default
    because DPSH, whose likelihood gradient is proportional to the bank codes that start at
    zero, stays at chance level for hundreds of steps on a from-scratch smallcnn; pass
    ``method="dpsh"`` (and enough epochs) for a DPSH victim.
    """
    values = {"epochs": 20, "batch_size": 16, "lr": 0.05} if method_params is None else dict(method_params)
    args = dict(method=method, method_params=values, bits=bits, num_items=num_items, num_classes=num_classes,
                shapes_per_image=shapes_per_image, num_query=num_query, num_train=num_train, map_topk=map_topk,
                width=width, seed=seed, device=str(device))
    key = canonical_json(args)
    if key not in _VICTIMS:
        _VICTIMS[key] = _build_victim(**args)
    return _VICTIMS[key]


def _build_victim(*, method: str, method_params: dict[str, Any], bits: int, num_items: int, num_classes: int,
                  shapes_per_image: int, num_query: int, num_train: int, map_topk: int | None, width: int,
                  seed: int, device: str) -> Victim:
    dataset = DatasetDecl(
        type="shapes", description="hashbench.testing victim",
        params={"num_items": num_items, "num_classes": num_classes, "image_size": 32,
                "min_shapes": shapes_per_image, "max_shapes": shapes_per_image},
        split=SplitSpec(num_query=num_query, num_train=num_train), map_topk=map_topk,
    )
    grid = Grid(profile="victim", datasets=[_VICTIM_DATASET], methods=[method], backbones=["smallcnn"],
                bits=[bits], defenses=["none"], attacks=[], seeds=[seed],
                params={"methods": {method: method_params},
                        "backbones": {"smallcnn": {"width": width, "features": 64}}})
    config = Config(RegistryConfig(datasets={_VICTIM_DATASET: dataset}, profiles={"victim": Profile()},
                                   grids={"victim": grid}), Path("<hashbench.testing>"))
    plan = build_plan(config, "victim", grid)
    stages = dict(plan.cells[0].stages)
    memo: dict[str, Artifact] = {}

    def artifact(stage: Stage) -> Artifact:
        if stage.key not in memo:
            for dep in stage.inputs.values():
                artifact(dep)
            memo[stage.key] = KINDS[stage.kind].run(ctx, stage)
        return memo[stage.key]

    ctx = StageContext(device=torch.device(device), reporter=Reporter(), artifact=artifact,
                       datasets=dict(getattr(plan, "datasets", {}) or {}))
    codes = artifact(stages["encode"]).tensors
    split_art = artifact(stages["split"])
    split = Split.from_tensors(split_art.tensors, split_art.meta["seed"])
    data = ctx.dataset(stages["split"].spec.dataset)
    victim = Victim(dataset=data, split=split, method=method, method_params=method_params,
                    codes={k: codes[k] for k in ("database", "train", "query")}, map_topk=map_topk,
                    clean_map=0.0, clean_t_map=0.0, device=torch.device(device), _ctx=ctx, _stages=stages)
    victim.clean_map, victim.clean_t_map = victim.retrieval(victim.codes["query"])
    return victim


# -- naming the plugin under test -------------------------------------------------------------

def _distribution_of(cls: type) -> list[str]:
    """[distribution, version] of the installed distribution that provides ``cls``'s module."""
    top = cls.__module__.split(".")[0]
    for dist in md.packages_distributions().get(top, []):
        try:
            return [dist, md.version(dist)]
        except md.PackageNotFoundError:
            continue
    return ["not installed", f"(module {cls.__module__})"]


def _resolve(kind: str, plugin: str | type | Any, params: Mapping[str, Any] | None) -> tuple[Any, str, str, list[str]]:
    """(instance, name, "attack 'name' (dist version)", [dist, version]) of the plugin under test."""
    registry = plugins.BY_KIND[kind]
    if isinstance(plugin, str):
        try:
            values = dict(params) if params is not None else profile_params(kind, plugin)
            instance = registry.create(plugin, values)
        except UserError as exc:  # fails to load, or its parameters are rejected
            raise AssertionError(f"{registry.kind} '{plugin}' cannot be created for the check: {exc}") from exc
        name, origin = plugin, list(registry.origin(plugin))
    else:
        cls = plugin if isinstance(plugin, type) else type(plugin)
        if not issubclass(cls, registry.base):
            raise AssertionError(f"{cls.__qualname__} is not a {registry.kind} plugin: it must subclass "
                                 f"{registry.base.__module__}.{registry.base.__qualname__}")
        name, origin = cls.name or cls.__name__, _distribution_of(cls)
        instance = cls.from_params(dict(params or {}), where=f"{registry.kind} '{name}'") if plugin is cls else plugin
    return instance, name, f"{registry.kind} '{name}' ({origin[0]} {origin[1]})", origin


def _fresh(plugin: Any) -> Any:
    """A new instance with the same parameters, as the harness creates one per stage."""
    try:
        return type(plugin)(plugin.params)
    except TypeError:  # a plugin with its own constructor signature
        return copy.deepcopy(plugin)


def _check_metadata(plugin: Any, label: str) -> None:
    for attribute in ("description", "paper"):
        if not str(getattr(plugin, attribute, "") or "").strip():
            raise AssertionError(f"{label}: class attribute '{attribute}' is empty; "
                                 "say in one line what it does and which paper it implements")


# -- attacks ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AttackCheck:
    """What :func:`check_attack` measured on the victim (MAP values are fractions in [0, 1])."""

    plugin: str
    targeted: bool
    clean_map: float
    adv_map: float
    clean_t_map: float
    adv_t_map: float
    linf_max: float
    seconds: float


@dataclass
class _AttackRun:
    x_adv: torch.Tensor
    codes: torch.Tensor
    linf_max: float
    state: dict[str, torch.Tensor]


def _prepare(attack: Attack, victim: Victim, seed: int, label: str) -> dict[str, torch.Tensor]:
    """Run ``prepare`` as the prepare stage does; return the state as the store would hand it back."""
    if not type(attack).has_prepare():
        return {}
    generator = seeded_generator(derive_seed(seed, "prepare"))
    try:
        state = attack.prepare(victim.model(), victim.attack_context(attack, generator)) or {}
    except Exception as exc:
        raise AssertionError(f"{label} raised {type(exc).__name__} in prepare: {exc}") from exc
    if not isinstance(state, Mapping) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise AssertionError(f"{label}: prepare returned {type(state).__name__}; it must return a dict of "
                             "named tensors (the state is stored as safetensors, never pickled)")
    return {k: v.detach().cpu().clone() for k, v in state.items()}  # the store keeps CPU copies


def _attack_once(attack: Attack, victim: Victim, seed: int, name: str, label: str, origin: list[str], *,
                 state: dict[str, torch.Tensor] | None = None, other_global_seed: bool = False) -> _AttackRun:
    """Prepare (unless ``state`` is given) and attack every query as the attack stage does."""
    attack = _fresh(attack)
    state = _prepare(attack, victim, seed, label) if state is None else state
    generator = seeded_generator(derive_seed(seed, "attack"))
    if other_global_seed:  # the harness seeds the global generator too; an attack must not rely on it
        torch.manual_seed(derive_seed(seed, "global-rng-probe"))
    model = victim.model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ctx = victim.attack_context(attack, generator, state)
    adv, codes = [], []
    for x, y, target in victim.query_batches(attack.params.batch_size):
        try:
            x_adv = attack.perturb(model, x, y, target if attack.targeted else None, ctx)
        except Exception as exc:
            raise AssertionError(f"{label} raised {type(exc).__name__} in perturb: {exc}") from exc
        try:
            check_batch(name, origin, attack.bounded, x, x_adv, attack.params.epsilon)
        except PluginError as exc:
            raise AssertionError(f"contract violated: {exc}") from exc
        if model.training:
            raise AssertionError(f"{label} left the model in training mode after perturb; the harness encodes "
                                 "the adversarial queries with it, so restore model.eval()")
        x_adv = x_adv.detach().clamp(0, 1)
        with torch.no_grad():
            codes.append(to_binary(model(x_adv)).cpu())
        adv.append(x_adv.cpu())
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    if changed:
        raise AssertionError(f"{label} changed the model's weights or buffers ({', '.join(changed[:3])}); "
                             "an attack must leave the victim as it found it")
    x_all = torch.cat(adv)
    clean = victim.dataset.images(victim.split.query)
    return _AttackRun(x_all, torch.cat(codes), float((x_all - clean).abs().max()), state)


def check_attack(attack: str | type[Attack] | Attack, victim: Victim | None = None, *,
                 params: Mapping[str, Any] | None = None, seed: int = 0) -> AttackCheck:
    """Check the attack contract on ``victim`` (default: :func:`tiny_victim`); raise AssertionError if broken.

    ``attack`` is a registered name, an Attack subclass or an instance.  Properties: it has a
    description and a paper; its parameters extend :class:`~hashbench.api.attack.AttackParams`;
    ``prepare`` returns named tensors; every returned batch has the input's shape, finite
    values in [0, 1] and (``bounded`` attacks) stays within ε — the harness's own per-batch
    check; ``perturb`` leaves the model's weights and eval mode alone; the same seed gives
    the same images, bit for bit, whatever the global random state (every draw comes from
    ``ctx.generator``); untargeted attacks lower MAP below the clean MAP, targeted attacks
    raise t-MAP above the clean t-MAP.
    """
    victim = victim or tiny_victim()
    instance, name, label, origin = _resolve("attacks", attack, params)
    _check_metadata(instance, label)
    if not isinstance(instance.params, AttackParams):
        raise AssertionError(f"{label}: its Params must subclass hashbench.api.attack.AttackParams "
                             "(epsilon and batch_size are read by the harness)")
    start = time.perf_counter()
    first = _attack_once(instance, victim, seed, name, label, origin)
    second = _attack_once(instance, victim, seed, name, label, origin)
    if not torch.equal(first.x_adv, second.x_adv):
        diff = float((first.x_adv - second.x_adv).abs().max())
        raise AssertionError(f"{label} is not deterministic for a seed: two runs with seed {seed} differ by up to "
                             f"{diff:.3g}; draw every random number from ctx.generator")
    shuffled = _attack_once(instance, victim, seed, name, label, origin, state=first.state, other_global_seed=True)
    if not torch.equal(first.x_adv, shuffled.x_adv):
        raise AssertionError(f"{label} is not deterministic for a seed: its output depends on torch's global "
                             "random state; draw every random number from ctx.generator")
    adv_map, adv_t_map = victim.retrieval(first.codes)
    if instance.targeted and not adv_t_map > victim.clean_t_map:
        raise AssertionError(f"{label} is targeted but does not raise t-MAP: {adv_t_map:.4f} under attack vs "
                             f"{victim.clean_t_map:.4f} clean")
    if not instance.targeted and not adv_map < victim.clean_map:
        raise AssertionError(f"{label} does not lower MAP: {adv_map:.4f} under attack vs {victim.clean_map:.4f} clean")
    return AttackCheck(label, bool(instance.targeted), victim.clean_map, adv_map, victim.clean_t_map, adv_t_map,
                       first.linf_max, time.perf_counter() - start)


# -- defenses -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class DefenseCheck:
    """What :func:`check_defense` measured: clean MAP of the victim and of the defended model."""

    plugin: str
    identity: bool
    clean_map: float
    defended_map: float
    loss_calls: int
    seconds: float
    #: an inference-time defense (a purifier in front of the unchanged model; it calls no hashing loss)
    inference_time: bool = False


def _defend_once(defense: Defense, victim: Victim, seed: int, label: str) -> tuple[HashModel, dict[str, Any], int]:
    """Fit as the defend stage does, counting calls of the method's loss."""
    defense = _fresh(defense)
    generator = seeded_generator(derive_seed(seed, "defend"))
    method = victim.hash_method()
    calls = 0
    loss = method.loss

    def counted(*args: Any, **kwargs: Any) -> torch.Tensor:
        nonlocal calls
        calls += 1
        return loss(*args, **kwargs)

    method.loss = counted  # type: ignore[method-assign]
    try:
        result = defense.fit(victim.model(frozen=False), method, victim.train_data(),
                             DefenseContext(victim.device, generator, Reporter()))
    except Exception as exc:
        raise AssertionError(f"{label} raised {type(exc).__name__} in fit: {exc}") from exc
    if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], HashModel)
            and isinstance(result[1], dict)):
        raise AssertionError(f"{label}: fit must return (HashModel, dict), got {type(result).__name__}")
    return result[0], result[1], calls


def check_defense(defense: str | type[Defense] | Defense, victim: Victim | None = None, *,
                  params: Mapping[str, Any] | None = None, seed: int = 0) -> DefenseCheck:
    """Check the defense contract on ``victim`` (default: :func:`tiny_victim`); raise AssertionError if broken.

    Properties: it has a description and a paper; an ``identity`` defense returns its input
    model untouched; any other one returns ``(HashModel, log)`` with the victim's
    architecture, finite weights that differ from the clean model's, outputs in [-1, 1],
    a JSON-storable log (finite numbers), trains with the hashing method's own ``loss``
    (so it works with every method), and gives the same weights, bit for bit, for the
    same seed.  An ``inference_time`` defense instead returns a :class:`PurifiedModel` whose
    hash model is the clean one, bit for bit, and whose purifier has finite weights, can be
    rebuilt by ``build_purifier`` from the stored weights and maps images to images in [0, 1].
    """
    victim = victim or tiny_victim()
    instance, _name, label, _origin = _resolve("defenses", defense, params)
    _check_metadata(instance, label)
    start = time.perf_counter()
    if instance.identity:
        model = victim.model(frozen=False)
        out, _log = instance.fit(model, victim.hash_method(), victim.train_data(),
                                 DefenseContext(victim.device, seeded_generator(seed), Reporter()))
        if out is not model:
            raise AssertionError(f"{label} is an identity defense but fit returned another model")
        return DefenseCheck(label, True, victim.clean_map, victim.clean_map, 0, time.perf_counter() - start)
    clean = victim.model().state_dict()
    model, log, calls = _defend_once(instance, victim, seed, label)
    state = model.state_dict()
    if instance.inference_time:
        _check_purified(instance, model, clean, victim, label)
    else:
        if set(state) != set(clean) or any(state[k].shape != clean[k].shape for k in clean):
            raise AssertionError(f"{label} returned a model of another architecture; train the model it is given")
        if not all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()):
            raise AssertionError(f"{label} returned non-finite weights")
        if all(torch.equal(state[k], clean[k]) for k in clean):
            raise AssertionError(f"{label} returned the clean model unchanged; a non-identity defense must train it "
                                 "(or declare identity = True)")
        if calls == 0:
            raise AssertionError(f"{label} never called the hashing method's loss; a defense trains with "
                                 "method.loss so that it works with every method")
    try:
        canonical_json(log)
    except (TypeError, ValueError) as exc:
        raise AssertionError(f"{label}: its log cannot be stored as JSON ({exc}); use plain finite numbers") from exc
    model.eval()
    query = encode_images(model, victim.dataset, victim.split.query, victim.device)
    with torch.no_grad():
        outputs = model(victim.dataset.images(victim.split.query[:8]).to(victim.device))
    if not (torch.isfinite(outputs).all() and outputs.abs().max() <= 1):
        raise AssertionError(f"{label} returned a model whose outputs are not finite values in [-1, 1]")
    again, _, _ = _defend_once(instance, victim, seed, label)
    if not all(torch.equal(v, again.state_dict()[k]) for k, v in state.items()):
        raise AssertionError(f"{label} is not deterministic for a seed: two fits with seed {seed} give different "
                             "weights; draw every random number from ctx.generator")
    defended_db = encode_images(model, victim.dataset, victim.split.database, victim.device)
    labels = victim.dataset.labels
    defended_map = map_at_k(query, defended_db, labels[victim.split.query], labels[victim.split.database],
                            topk=victim.map_topk)
    return DefenseCheck(label, False, victim.clean_map, float(defended_map), calls, time.perf_counter() - start,
                        inference_time=instance.inference_time)


def _check_purified(defense: Defense, model: HashModel, clean: dict[str, torch.Tensor], victim: Victim,
                    label: str) -> None:
    """The inference-time properties of :func:`check_defense`."""
    if not isinstance(model, PurifiedModel):
        raise AssertionError(f"{label} is an inference-time defense but fit returned {type(model).__name__}; "
                             "return PurifiedModel(purifier, model) (InferenceDefense.fit does)")
    hash_state = model.hash_model.state_dict()
    if set(hash_state) != set(clean) or not all(torch.equal(hash_state[k], clean[k]) for k in clean):
        raise AssertionError(f"{label} changed the hash model; an inference-time defense trains only its purifier")
    weights = model.purifier.state_dict()
    if not all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point()):
        raise AssertionError(f"{label} returned a purifier with non-finite weights")
    try:  # what loading the defend stage's artifact does
        defense.build_purifier().load_state_dict(weights)
    except Exception as exc:
        raise AssertionError(f"{label}: build_purifier() cannot load the trained purifier's weights ({exc}); "
                             "it must rebuild the same network from the parameters alone") from exc
    x = victim.dataset.images(victim.split.query[:8]).to(victim.device)
    with torch.no_grad():
        purified = model.purifier(x)
    if purified.shape != x.shape or not (torch.isfinite(purified).all() and 0 <= purified.min() <= purified.max() <= 1):
        raise AssertionError(f"{label}: the purifier must map images to images of the same shape in [0, 1]")
