"""Expand a grid into cells and a DAG of stages, each with its content-addressed key.

A cell is (dataset, method, backbone, bits, defense, attack, seed); ``attack = "clean"`` is
the evaluation without attack.  On a grid with ``transfer: true`` a cell may also name a
``surrogate``: another model of the grid whose adversarial queries attack this cell's model
(black-box transfer, :func:`_transfer_cells`).  Cells share stages: the split of a dataset and seed, the
clean model of (split, method, backbone, bits), the defended model, its codes, and so on.
A stage's key hashes its fully resolved spec (plugin names, parameters, distribution and
version) together with the keys of its inputs, so changing one parameter changes exactly
the keys downstream of it.

Datasets are opened at plan time (cheap: ``shapes`` is procedural, ``listfile`` reads its
list files) so that the split's key includes the dataset's :meth:`fingerprint` (a changed
list file gives a new split, hence new everything downstream); the opened datasets travel
with the plan so that the stages do not load them again.  A union grid plans its members
together: a stage two members share is one stage.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from typing import Any, Callable

from hashbench import plugins
from hashbench.api.dataset import HashDataset
from hashbench.api.params import params_dict, validate_params
from hashbench.api.registry import unknown_name_message
from hashbench.data.splits import check_split_sizes, own_split, size_differences
from hashbench.errors import ConfigError, PluginError, UserError
from hashbench.harness.config import (GRID_AXES, PER_DATASET_KINDS, Config, DatasetDecl, Grid, Profile, UnionGrid,
                                      check_param_name, not_on_axis)
from hashbench.harness.sizes import Sizes, dataset_sizes, declared_sizes
from hashbench.harness.stages.attack import AttackSpec
from hashbench.harness.stages.chance import CHANCE_DRAWS, ChanceSpec
from hashbench.harness.stages.context import AMP_DTYPES
from hashbench.harness.stages.craft import CraftSpec
from hashbench.harness.stages.defend import DefendSpec
from hashbench.harness.stages.encode import EncodeSpec
from hashbench.harness.stages.evaluate import EvaluateSpec
from hashbench.harness.stages.kinds import STAGE_KINDS
from hashbench.harness.stages.prepare import PrepareSpec
from hashbench.harness.stages.pretrain import PretrainSpec
from hashbench.harness.stages.spec import DatasetSpec, EvaluatedAttack, PluginSpec, Stage
from hashbench.harness.stages.split import SplitSpec
from hashbench.harness.stages.train import TrainSpec
from hashbench.harness.stages.transfer import TransferSpec
from hashbench.harness.store import canonical_json
from hashbench.results.schema import CLEAN
from hashbench.retrieval.metrics import DEFAULT_RADIUS


def derive_seed(seed: int, purpose: str) -> int:
    """A 31-bit seed for one purpose (stage kind) of a cell seed; recorded in every result."""
    return int(hashlib.sha256(f"{purpose}:{seed}".encode()).hexdigest()[:8], 16) & 0x7FFFFFFF


def model_id(method: str, backbone: str, bits: int, defense: str) -> str:
    """The name of a model of a grid, e.g. ``dpsh-smallcnn-32-none``: a transfer cell's ``surrogate``."""
    return f"{method}-{backbone}-{bits}-{defense}"


@dataclass(frozen=True)
class PlanOptions:
    """Run settings that change numbers, hence keys: mixed precision.

    ``amp`` ("bf16" or "fp16") autocasts the training stages (train, defend); the attack
    stages (prepare, attack) stay fp32 unless ``amp_attacks``.  Settings that only change
    speed (device, threads, channels-last) are not part of keys.
    """

    amp: str | None = None
    amp_attacks: bool = False

    def __post_init__(self) -> None:
        if self.amp is not None and self.amp not in AMP_DTYPES:
            raise ConfigError(f"--amp: unknown precision '{self.amp}' (allowed: {', '.join(AMP_DTYPES)})")
        if self.amp_attacks and self.amp is None:
            raise ConfigError("--amp-attacks needs --amp bf16 or --amp fp16")


@dataclass
class Cell:
    dataset: str
    method: str
    backbone: str
    bits: int
    defense: str
    attack: str
    seed: int
    evaluate: Stage
    stages: dict[str, Stage]
    grid: str = ""
    #: the :func:`model_id` whose adversarial queries attack this cell's model (a transfer cell),
    #: ``None`` for the white-box cells (the attack crafted on the model it attacks)
    surrogate: str | None = None

    @property
    def coords(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "method": self.method, "backbone": self.backbone, "bits": self.bits,
                "defense": self.defense, "attack": self.attack, "surrogate": self.surrogate, "seed": self.seed}

    @property
    def cell_id(self) -> str:
        source = f"-from-{self.surrogate}" if self.surrogate else ""
        return (f"{self.dataset}-{self.method}-{self.backbone}-{self.bits}-{self.defense}-{self.attack}{source}"
                f"-s{self.seed}")

    def resolved_params(self) -> dict[str, dict[str, Any] | None]:
        """The parameters its stages run with, per plugin kind, after every layer (profile, grid,
        ``params_by_dataset``, ``--set``); ``None`` for no defense (the clean model) and no attack.
        ``split`` is the split stage's spec: the sizes and, when not the default, the target rule."""
        train = self.stages["train"].spec
        split = self.stages["split"].spec
        defend = self.stages.get("defend")
        attack = self.stages.get("attack") or self.stages.get("craft")
        return {"dataset": dict(split.dataset.params), "split": split.split,
                "method": dict(train.method.params), "backbone": dict(train.backbone.params),
                "defense": dict(defend.spec.defense.params) if defend is not None else None,
                "attack": dict(attack.spec.attack.params) if attack is not None else None}


@dataclass
class Plan:
    grid_name: str
    profile_name: str
    cells: list[Cell]
    #: datasets opened while planning, by :attr:`~hashbench.harness.stages.spec.DatasetSpec.key`; the local executor reuses them
    datasets: dict[str, HashDataset] = field(default_factory=dict)
    #: dataset name → why it could not be opened (only with ``require_data=False``)
    unavailable: dict[str, str] = field(default_factory=dict)
    members: list[str] = field(default_factory=list)
    #: member grid → the ids of its cells (a cell two members define is in both lists)
    member_cells: dict[str, list[str]] = field(default_factory=dict)
    options: PlanOptions = field(default_factory=PlanOptions)
    #: split stage key → the sizes of that split (for cost estimates); absent when unknown
    sizes: dict[str, Sizes] = field(default_factory=dict)
    #: dataset name → how its own split files differ from the declared split (they are used as they are)
    split_notes: dict[str, str] = field(default_factory=dict)

    def stages(self) -> list[Stage]:
        """Every distinct stage, inputs before the stages that use them."""
        seen: dict[str, Stage] = {}

        def visit(stage: Stage) -> None:
            if stage.key in seen:
                return
            for dep in stage.inputs.values():
                visit(dep)
            seen[stage.key] = stage

        for cell in self.cells:
            visit(cell.evaluate)
        return list(seen.values())

    def cell_grids(self) -> dict[str, list[str]]:
        """Cell id → the member grids that define it (a union's shared cell is in several)."""
        out: dict[str, list[str]] = {}
        for member, ids in self.member_cells.items():
            for cell_id in ids:
                out.setdefault(cell_id, []).append(member)
        return out

    def counts(self) -> dict[str, int]:
        """Distinct stages per kind, in :data:`STAGE_KINDS` order (kinds with none left out)."""
        out = {kind: 0 for kind in STAGE_KINDS}
        for stage in self.stages():
            out[stage.kind] += 1
        return {k: v for k, v in out.items() if v}


#: cell coordinate → plugin kind, for the plugins whose parameters :meth:`Cell.resolved_params` lists
_CELL_PLUGINS = {"method": "methods", "backbone": "backbones", "defense": "defenses", "attack": "attacks"}


def away_from_defaults(plan: Plan) -> list[dict[str, Any]]:
    """The plugin parameters of ``plan`` that differ from the plugins' defaults, grouped.

    One entry per plugin and set of changed values: ``kind`` ("method", …), ``name``, ``values``
    (only the changed parameters), and the ``grids`` and ``datasets`` of the cells that use them,
    in plan order.  A compact view of what every layer (profile, grid, ``params_by_dataset``,
    ``--set``) changed; :meth:`Cell.resolved_params` has every value.
    """
    defaults: dict[tuple[str, str], dict[str, Any]] = {}
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    grids = plan.cell_grids()
    for cell in plan.cells:
        for coord, params in cell.resolved_params().items():
            if coord not in _CELL_PLUGINS or params is None:
                continue
            name = getattr(cell, coord)
            if (coord, name) not in defaults:
                fields = plugins.BY_KIND[_CELL_PLUGINS[coord]].get(name).Params.model_fields
                defaults[coord, name] = {f: info.default for f, info in fields.items()}
            base = defaults[coord, name]
            changed = {k: v for k, v in params.items() if k not in base or _json_value(base[k]) != v}
            if not changed:
                continue
            group = groups.setdefault((coord, name, canonical_json(changed)),
                                      {"kind": coord, "name": name, "values": changed, "grids": [], "datasets": []})
            for key, values in (("grids", grids.get(cell.cell_id, [cell.grid])), ("datasets", [cell.dataset])):
                group[key].extend(v for v in values if v not in group[key])
    return list(groups.values())


def _json_value(value: Any) -> Any:
    """A schema default as :func:`params_dict` writes values (tuples as lists)."""
    return list(value) if isinstance(value, tuple) else value


def _plugin_spec(kind: str, name: str, values: dict[str, Any], where: str) -> PluginSpec:
    registry = plugins.BY_KIND[kind]
    params = validate_params(registry.get(name).Params, values, where)
    return PluginSpec(name, params_dict(params), tuple(registry.origin(name)))


def resolved_values(kind: str, name: str, profile: Profile, grid: Grid, dataset: str) -> dict[str, Any]:
    """Plugin defaults, scaled by the profile, then the profile's ``set``, the grid's ``params`` and
    the grid's ``params_by_dataset`` of ``dataset``, each over the one before."""
    cls = plugins.BY_KIND[kind].get(name)
    values: dict[str, Any] = {}
    for field_name, factor in profile.scale.items():
        info = cls.Params.model_fields.get(field_name)
        if info is not None and isinstance(info.default, int) and not isinstance(info.default, bool):
            values[field_name] = max(1, round(info.default * factor))
    values.update(profile.set.get(kind, {}).get(name, {}))
    values.update(grid.plugin_values(kind, name, dataset))
    return values


def _where(where: str, kind: str, name: str, grid: Grid, dataset: str) -> str:
    """Where a plugin's values come from, for errors; names the dataset when it has values of its own."""
    own = name in grid.params_by_dataset.get(dataset, {}).get(kind, {})
    return f"{where}: {kind[:-1]} '{name}'" + (f" on dataset '{dataset}'" if own else "")


def _check_names(grid: Grid, where: str, config: Config) -> None:
    for i, name in enumerate(grid.datasets):
        if name not in config.data.datasets:
            raise ConfigError(f"{where}.datasets[{i}]: {unknown_name_message('dataset', name, list(config.data.datasets))}")
    for kind in PER_DATASET_KINDS:
        registry = plugins.BY_KIND[kind]
        for i, name in enumerate(getattr(grid, kind)):
            if name not in registry:
                raise ConfigError(f"{where}.{kind}[{i}]: {registry.unknown_name_message(name)}")
    if CLEAN in grid.attacks:
        raise ConfigError(f"{where}.attacks: '{CLEAN}' is always evaluated; do not list it")
    for kind, table in grid.params.items():
        axis = grid.datasets if kind == "datasets" else getattr(grid, kind)
        for name in table:
            if name not in axis:
                raise ConfigError(f"{where}.params.{kind}.{name}: '{name}' is not on the grid's {kind} axis ({', '.join(axis)})")
    for dname, kinds in grid.params_by_dataset.items():
        at = f"{where}.params_by_dataset.{dname}"
        if dname not in grid.datasets:
            raise ConfigError(f"{at}: {not_on_axis('datasets', dname, grid.datasets)}")
        for kind, table in kinds.items():
            axis = getattr(grid, kind)
            for name, values in table.items():
                if name not in axis:
                    raise ConfigError(f"{at}.{kind}.{name}: {not_on_axis(kind, name, axis)}")
                for param in values:
                    check_param_name(config, kind, name, str(param), f"{at}.{kind}.{name}")


def _dupes(grid: Grid, where: str) -> None:
    for kind in GRID_AXES:
        values = getattr(grid, kind)
        if len(set(values)) != len(values):
            raise ConfigError(f"{where}.{kind}: duplicate entries {values}")


def build_plan(config: Config, grid_name: str, grid: Grid | UnionGrid, profile_name: str | None = None, *,
               options: PlanOptions | None = None, require_data: bool = True) -> Plan:
    """Resolve every parameter, validate every name and build the stage DAG of ``grid``.

    A union grid is planned as the union of its members (see :func:`plan_members`).
    """
    members = config.members(grid_name, grid) if isinstance(grid, UnionGrid) else [(grid_name, grid)]
    return plan_members(config, grid_name, members, profile_name, options=options, require_data=require_data)


def plan_members(config: Config, name: str, members: list[tuple[str, Grid]], profile_name: str | None = None, *,
                 options: PlanOptions | None = None, require_data: bool = True,
                 sources: dict[str, str] | None = None) -> Plan:
    """Plan the cross-product grids ``members`` together; a stage several members share is planned once.

    ``profile_name`` overrides every member's profile.  ``require_data=False`` plans datasets
    that cannot be opened (no files here) with provisional keys and lists them in
    ``Plan.unavailable`` (for ``hashbench plan`` on a machine without the data).
    ``sources`` names where each member was defined, for error messages.
    """
    options = options or PlanOptions()
    plan = Plan(name, "", [], members=[m for m, _ in members], options=options)
    stages: dict[str, Stage] = {}
    cells: dict[str, Cell] = {}
    profiles = []
    for member, grid in members:
        where = (sources or {}).get(member) or f"{config.path}: grids.{member}"
        profile = profile_name or grid.profile
        profiles.append(profile)
        for cell in _plan_grid(config, member, grid, config.profile(profile), where, options, plan, stages, require_data):
            plan.member_cells.setdefault(member, []).append(cell.cell_id)
            earlier = cells.get(cell.cell_id)
            if earlier is None:
                cells[cell.cell_id] = cell
            elif earlier.evaluate.key != cell.evaluate.key:
                raise ConfigError(
                    f"cell {cell.cell_id} is in grids '{earlier.grid}' and '{member}' with different parameters "
                    "(profile or params); a union needs one definition of each cell"
                )
    plan.cells = list(cells.values())
    plan.profile_name = "+".join(dict.fromkeys(profiles))
    return plan


def _open_dataset(config: Config, dname: str, spec: DatasetSpec, plan: Plan, require_data: bool) -> str | None:
    """Open (once per plan) the dataset of ``spec``; its fingerprint, or ``None`` if unavailable."""
    key = spec.key
    if key not in plan.datasets:
        try:
            plan.datasets[key] = plugins.datasets.create(spec.type, dict(spec.params))
        except UserError as exc:
            if require_data:
                raise ConfigError(f"{config.path}: datasets.{dname}: {exc}") from None
            plan.unavailable[dname] = str(exc)
            return None
    dataset = plan.datasets[key]
    try:
        return dataset.fingerprint()
    except NotImplementedError:
        raise PluginError(f"dataset plugin '{spec.type}' does not implement fingerprint(), which cache keys "
                          "need (a hash of what defines its data: parameters, file contents)") from None


def _check_split_fits(config: Config, dname: str, data: HashDataset, decl: DatasetDecl) -> None:
    """Split sizes the opened dataset cannot hold fail at plan time, not in every cell's split stage."""
    if own_split(data, decl.split.draw) is None:
        s = decl.split
        try:
            check_split_sizes(len(data), s.num_query, s.num_train, s.num_database)
        except ConfigError as exc:
            raise ConfigError(f"{config.path}: datasets.{dname}.{exc}") from None


def split_note(data: HashDataset, decl: DatasetDecl) -> str | None:
    """How the dataset's own split files, if they are used, differ in size from the declared split."""
    own = own_split(data, decl.split.draw)
    differ = size_differences(own, decl.declared_counts()) if own is not None else []
    if not differ:
        return None
    return (f"the dataset's own split files differ in size from the registry's split: {', '.join(differ)}; "
            "the split files are used as they are (split: {mode: draw} draws the declared sizes instead)")


def _sizes(plan: Plan, decl: DatasetDecl, spec: DatasetSpec, split: dict[str, Any], opened: bool) -> Sizes | None:
    if opened:
        return dataset_sizes(plan.datasets[spec.key], split)
    image_size = spec.params.get("image_size")
    return declared_sizes(split, decl.num_items or spec.params.get("num_items"), image_size,
                          decl.classes or spec.params.get("num_classes"))


def _plan_grid(config: Config, grid_name: str, grid: Grid, profile: Profile, where: str, options: PlanOptions,
               plan: Plan, cache: dict[str, Stage], require_data: bool) -> list[Cell]:
    _dupes(grid, where)
    _check_names(grid, where, config)

    def intern(stage: Stage) -> Stage:
        return cache.setdefault(stage.key, stage)

    train_amp = options.amp
    attack_amp = options.amp if options.amp_attacks else None
    cells: list[Cell] = []
    models: dict[tuple[str, int], list[_Model]] = {}  # (dataset, seed) → its models, for transfer cells
    for dname, mname, bname, bits, dfname, seed in itertools.product(
        grid.datasets, grid.methods, grid.backbones, grid.bits, grid.defenses, grid.seeds
    ):
        decl = config.dataset(dname)
        try:
            ds_values = {**decl.params, **grid.params.get("datasets", {}).get(dname, {})}
            plugin = _plugin_spec("datasets", decl.type, ds_values, f"{config.path}: datasets.{dname}.params")
        except PluginError as exc:
            raise ConfigError(f"{config.path}: datasets.{dname}.type: {exc}") from None
        dataset = DatasetSpec(dname, plugin.params, plugin.origin, type=decl.type)
        fingerprint = _open_dataset(config, dname, dataset, plan, require_data)
        if fingerprint is not None:
            _check_split_fits(config, dname, plan.datasets[dataset.key], decl)
            note = split_note(plan.datasets[dataset.key], decl)
            if note is not None:
                plan.split_notes[dname] = note
        split_spec = {**decl.split.stage_spec(), **grid.targets.stage_spec()}  # sizes, and a non-default target rule
        split = intern(Stage(SplitSpec(dataset, split_spec, fingerprint, derive_seed(seed, "split"))))
        if split.key not in plan.sizes:
            sizes = _sizes(plan, decl, dataset, split_spec, fingerprint is not None)
            if sizes is not None:
                plan.sizes[split.key] = sizes
        method = _plugin_spec("methods", mname, resolved_values("methods", mname, profile, grid, dname),
                              _where(where, "methods", mname, grid, dname))
        backbone = _plugin_spec("backbones", bname, resolved_values("backbones", bname, profile, grid, dname),
                                _where(where, "backbones", bname, grid, dname))
        train_inputs = {"split": split}
        if backbone.params.get("pretrain_epochs", 0) > 0:  # BackboneParams' supervised warm start
            train_inputs["pretrain"] = intern(Stage(PretrainSpec(backbone, derive_seed(seed, "pretrain"), train_amp),
                                                    {"split": split}))
        train = intern(Stage(TrainSpec(method, backbone, bits, derive_seed(seed, "train"), train_amp), train_inputs))
        defense_cls = plugins.defenses.get(dfname)
        if defense_cls.identity:
            model = train
            defend = None
        else:
            defense = _plugin_spec("defenses", dfname, resolved_values("defenses", dfname, profile, grid, dname),
                                   _where(where, "defenses", dfname, grid, dname))
            defend = intern(Stage(DefendSpec(defense, method, derive_seed(seed, "defend"), train_amp),
                                  {"model": train, "split": split}))
            model = defend
        encode = intern(Stage(EncodeSpec(), {"model": model, "split": split}))
        evaluation = {"map_topk": decl.map_topk, "pn": decl.pn, "radius": DEFAULT_RADIUS}  # evaluate's spec
        chance = intern(Stage(ChanceSpec(bits, decl.map_topk, CHANCE_DRAWS, derive_seed(seed, "chance")),
                              {"split": split}))
        base_stages = {"split": split, "chance": chance, **train_inputs, "train": train, "encode": encode}
        if defend is not None:
            base_stages["defend"] = defend
        clean_eval = intern(Stage(EvaluateSpec(None, **evaluation),
                                  {"codes": encode, "encode": encode, "split": split, "chance": chance}))
        cells.append(Cell(dname, mname, bname, bits, dfname, CLEAN, seed, clean_eval,
                          {**base_stages, "evaluate": clean_eval}, grid_name))
        entry = _Model((mname, bname, bits, dfname), model, base_stages, evaluation)
        models.setdefault((dname, seed), []).append(entry)
        for aname in grid.attacks:
            attack = _plugin_spec("attacks", aname, resolved_values("attacks", aname, profile, grid, dname),
                                  _where(where, "attacks", aname, grid, dname))
            attack_cls = plugins.attacks.get(aname)
            inputs = {"model": model, "encode": encode, "split": split}
            stages = dict(base_stages)
            if attack_cls.has_prepare():
                prepare = intern(Stage(PrepareSpec(attack, derive_seed(seed, "prepare"), attack_amp),
                                       {"model": model, "encode": encode, "split": split}))
                inputs["prepare"] = prepare
                stages["prepare"] = prepare
            attack_stage = intern(Stage(AttackSpec(attack, derive_seed(seed, "attack"), attack_amp), inputs))
            evaluated = EvaluatedAttack(aname, attack_cls.targeted)
            evaluate = intern(Stage(EvaluateSpec(evaluated, **evaluation),
                                    {"codes": attack_stage, "encode": encode, "split": split, "chance": chance}))
            stages.update({"attack": attack_stage, "evaluate": evaluate})
            cells.append(Cell(dname, mname, bname, bits, dfname, aname, seed, evaluate, stages, grid_name))
            entry.attacks[aname] = (attack_stage, evaluated)
    if grid.transfer:
        cells += _transfer_cells(grid_name, models, intern)
    return cells


@dataclass
class _Model:
    """One model of a grid on a dataset and seed, as :func:`_transfer_cells` needs it."""

    coords: tuple[str, str, int, str]  # method, backbone, bits, defense
    model: Stage  # its train stage, or its defend stage
    base_stages: dict[str, Stage]  # split, chance, (pretrain,) train, (defend,) encode
    evaluation: dict[str, Any]  # the evaluate stage's spec without its attack
    #: attack name → (its white-box attack stage, the attack its evaluations score)
    attacks: dict[str, tuple[Stage, EvaluatedAttack]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return model_id(*self.coords)


def _transfer_cells(grid_name: str, models: dict[tuple[str, int], list[_Model]],
                    intern: Callable[[Stage], Stage]) -> list[Cell]:
    """Black-box transfer: every model of a dataset and seed is the surrogate of every other one.

    Per surrogate and attack, one ``craft`` stage runs exactly the surrogate's white-box attack (its
    attack stage's spec and inputs) and keeps the adversarial images; per victim, a ``transfer``
    stage encodes them with the victim's model, and an evaluation scores those codes against the
    victim's database codes.  The models of a dataset and seed share their split, so the queries
    and their target labels are the same for both.
    """
    cells: list[Cell] = []
    for (dname, seed), group in models.items():
        for surrogate in group:
            for aname, (attack_stage, attack_entry) in surrogate.attacks.items():
                own = attack_stage.spec
                craft = intern(Stage(CraftSpec(own.attack, own.seed, own.amp), attack_stage.inputs))
                for victim in group:
                    if victim.model.key == surrogate.model.key:
                        continue
                    base = victim.base_stages
                    transfer = intern(Stage(TransferSpec(attack_entry),
                                            {"craft": craft, "model": victim.model, "split": base["split"]}))
                    evaluate = intern(Stage(EvaluateSpec(attack_entry, **victim.evaluation),
                                            {"codes": transfer, "encode": base["encode"], "split": base["split"],
                                             "chance": base["chance"]}))
                    stages = {**base, "craft": craft, "transfer": transfer, "evaluate": evaluate}
                    cells.append(Cell(dname, *victim.coords, aname, seed, evaluate, stages, grid_name,
                                      surrogate=surrogate.name))
    return cells
