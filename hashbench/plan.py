"""Expand a grid into cells and a DAG of stages, each with its content-addressed key.

A cell is (dataset, method, backbone, bits, defense, attack, seed); ``attack = "clean"`` is
the evaluation without attack.  Cells share stages: the split of a dataset and seed, the
clean model of (split, method, backbone, bits), the defended model, its codes, and so on.
A stage's key hashes its fully resolved spec (plugin names, parameters, distribution and
version) together with the keys of its inputs, so changing one parameter changes exactly
the keys downstream of it.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from typing import Any

from . import registries
from .config import Config, Grid, Profile
from .errors import ConfigError, PluginError
from .params import params_dict, validate_params
from .registry import unknown_name_message
from .store import artifact_key

STAGE_KINDS = ("split", "train", "defend", "encode", "prepare", "attack", "evaluate")
CLEAN = "clean"


def derive_seed(seed: int, purpose: str) -> int:
    """A 31-bit seed for one purpose (stage kind) of a cell seed; recorded in every result."""
    return int(hashlib.sha256(f"{purpose}:{seed}".encode()).hexdigest()[:8], 16) & 0x7FFFFFFF


@dataclass(eq=False)
class Stage:
    kind: str
    spec: dict[str, Any]
    inputs: dict[str, "Stage"] = field(default_factory=dict)
    key: str = field(init=False)

    def __post_init__(self) -> None:
        self.key = artifact_key(self.kind, {**self.spec, "inputs": {n: s.key for n, s in sorted(self.inputs.items())}})

    @property
    def label(self) -> str:
        names = [self.spec[k]["name"] for k in ("dataset", "method", "defense", "attack") if isinstance(self.spec.get(k), dict)]
        return f"{self.kind} {' '.join(names)} [{self.key[:8]}]"


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

    @property
    def coords(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "method": self.method, "backbone": self.backbone, "bits": self.bits,
                "defense": self.defense, "attack": self.attack, "seed": self.seed}

    @property
    def cell_id(self) -> str:
        return f"{self.dataset}-{self.method}-{self.backbone}-{self.bits}-{self.defense}-{self.attack}-s{self.seed}"


@dataclass
class Plan:
    grid_name: str
    profile_name: str
    cells: list[Cell]

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


def _plugin_spec(kind: str, name: str, values: dict[str, Any], where: str) -> dict[str, Any]:
    registry = registries.BY_KIND[kind]
    cls = registry.get(name)
    params = validate_params(cls.Params, values, where)
    dist, version = registry.origin(name)
    return {"name": name, "params": params_dict(params), "origin": [dist, version]}


def _resolved_values(kind: str, name: str, profile: Profile, grid: Grid) -> dict[str, Any]:
    """Plugin defaults, scaled by the profile, then the profile's and the grid's explicit values."""
    cls = registries.BY_KIND[kind].get(name)
    values: dict[str, Any] = {}
    for field_name, factor in profile.scale.items():
        info = cls.Params.model_fields.get(field_name)
        if info is not None and isinstance(info.default, int) and not isinstance(info.default, bool):
            values[field_name] = max(1, round(info.default * factor))
    values.update(profile.set.get(kind, {}).get(name, {}))
    values.update(grid.params.get(kind, {}).get(name, {}))
    return values


def _check_names(grid: Grid, grid_name: str, config: Config) -> None:
    where = f"{config.path}: grids.{grid_name}"
    for i, name in enumerate(grid.datasets):
        if name not in config.data.datasets:
            raise ConfigError(f"{where}.datasets[{i}]: {unknown_name_message('dataset', name, list(config.data.datasets))}")
    for kind in ("methods", "backbones", "defenses", "attacks"):
        registry = registries.BY_KIND[kind]
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


def _dupes(grid: Grid, grid_name: str, config: Config) -> None:
    for kind in ("datasets", "methods", "backbones", "bits", "defenses", "attacks", "seeds"):
        values = getattr(grid, kind)
        if len(set(values)) != len(values):
            raise ConfigError(f"{config.path}: grids.{grid_name}.{kind}: duplicate entries {values}")


def build_plan(config: Config, grid_name: str, grid: Grid, profile_name: str | None = None) -> Plan:
    """Resolve every parameter, validate every name and build the stage DAG of ``grid``."""
    profile_name = profile_name or grid.profile
    profile = config.profile(profile_name)
    _dupes(grid, grid_name, config)
    _check_names(grid, grid_name, config)
    where = f"{config.path}: grids.{grid_name}"
    cache: dict[str, Stage] = {}

    def intern(stage: Stage) -> Stage:
        return cache.setdefault(stage.key, stage)

    cells: list[Cell] = []
    for dname, mname, bname, bits, dfname, seed in itertools.product(
        grid.datasets, grid.methods, grid.backbones, grid.bits, grid.defenses, grid.seeds
    ):
        decl = config.dataset(dname)
        try:
            ds_values = {**decl.params, **grid.params.get("datasets", {}).get(dname, {})}
            dataset = _plugin_spec("datasets", decl.type, ds_values, f"{config.path}: datasets.{dname}.params")
        except PluginError as exc:
            raise ConfigError(f"{config.path}: datasets.{dname}.type: {exc}") from None
        dataset.update(name=dname, type=decl.type)
        split = intern(Stage("split", {"dataset": dataset, "split": decl.split.model_dump(),
                                       "seed": derive_seed(seed, "split")}))
        method = _plugin_spec("methods", mname, _resolved_values("methods", mname, profile, grid),
                              f"{where}: method '{mname}'")
        backbone = _plugin_spec("backbones", bname, _resolved_values("backbones", bname, profile, grid),
                                f"{where}: backbone '{bname}'")
        train = intern(Stage("train", {"method": method, "backbone": backbone, "bits": bits,
                                       "seed": derive_seed(seed, "train")}, {"split": split}))
        defense_cls = registries.defenses.get(dfname)
        if defense_cls.identity:
            model = train
            defend = None
        else:
            defense = _plugin_spec("defenses", dfname, _resolved_values("defenses", dfname, profile, grid),
                                   f"{where}: defense '{dfname}'")
            defend = intern(Stage("defend", {"defense": defense, "method": method,
                                             "seed": derive_seed(seed, "defend")}, {"model": train, "split": split}))
            model = defend
        encode = intern(Stage("encode", {}, {"model": model, "split": split}))
        evaluation = {"map_topk": decl.map_topk, "pn": decl.pn}
        base_stages = {"split": split, "train": train, "encode": encode}
        if defend is not None:
            base_stages["defend"] = defend
        clean_eval = intern(Stage("evaluate", {"attack": None, **evaluation}, {"codes": encode, "encode": encode, "split": split}))
        cells.append(Cell(dname, mname, bname, bits, dfname, CLEAN, seed, clean_eval, {**base_stages, "evaluate": clean_eval}))
        for aname in grid.attacks:
            attack = _plugin_spec("attacks", aname, _resolved_values("attacks", aname, profile, grid),
                                  f"{where}: attack '{aname}'")
            attack_cls = registries.attacks.get(aname)
            inputs = {"model": model, "encode": encode, "split": split}
            stages = dict(base_stages)
            if attack_cls.has_prepare():
                prepare = intern(Stage("prepare", {"attack": attack, "seed": derive_seed(seed, "prepare")},
                                       {"model": model, "encode": encode, "split": split}))
                inputs["prepare"] = prepare
                stages["prepare"] = prepare
            attack_stage = intern(Stage("attack", {"attack": attack, "seed": derive_seed(seed, "attack")}, inputs))
            evaluate = intern(Stage("evaluate", {"attack": {"name": aname, "targeted": attack_cls.targeted}, **evaluation},
                                    {"codes": attack_stage, "encode": encode, "split": split}))
            stages.update({"attack": attack_stage, "evaluate": evaluate})
            cells.append(Cell(dname, mname, bname, bits, dfname, aname, seed, evaluate, stages))
    return Plan(grid_name, profile_name, cells)
