"""``registry.yaml``: dataset declarations, profiles and grids, validated with pointed errors.

Every error names the file, the key path and what is allowed.  Plugin names in grids are
checked against the plugin registries (with did-you-mean) and plugin parameters against
each plugin's schema, before any work starts.

A grid is either a cross product (:class:`Grid`) or a union of other grids
(:class:`UnionGrid`, ``union: [table1, table2]``); the planner plans a union's members
together, so stages they share run once.  A grid may also come from a YAML file of its own
(:func:`load_grid_file`), and command-line overrides (``--set KEY=VALUE``) change its axes
and plugin parameters (:func:`apply_overrides`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (BaseModel, ConfigDict, Discriminator, Field, StrictBool, Tag, TypeAdapter, ValidationError,
                      field_validator)

from hashbench.api.registry import PLUGIN_KINDS, did_you_mean, name_problem, unknown_name_message
from hashbench.errors import ConfigError, PluginError, excerpt, shorten
from hashbench.harness.safe_yaml import load_config_file, load_yaml_text

#: the longest code a grid may ask for (the ranking kernel takes more; no method is meant for more)
MAX_BITS = 1024
#: the most items a dataset declaration, split or cut-off may name (10× the largest supported dataset)
MAX_ITEMS = 10_000_000
#: the most classes a dataset declaration may name
MAX_CLASSES = 100_000
#: seeds are 0 … MAX_SEED (they appear in cell ids and seed torch and numpy)
MAX_SEED = 2**31 - 1
#: the largest factor a profile may scale a parameter by
MAX_SCALE = 1_000_000.0
#: the longest ``--set`` key (params.<kind>.<64-character name>.<parameter> fits)
MAX_KEY_CHARS = 200

REGISTRY_ENV = "HASHBENCH_REGISTRY"
#: the axes of a cross-product grid, in the order users see them
GRID_AXES: tuple[str, ...] = ("datasets", "methods", "backbones", "bits", "defenses", "attacks", "seeds")
#: the axes that name plugins (the plugin kinds, in axis order): the kinds a grid's ``params`` may set
PLUGIN_AXES: tuple[str, ...] = tuple(axis for axis in GRID_AXES if axis in PLUGIN_KINDS)


def _check_kinds(table: dict[str, Any]) -> dict[str, Any]:
    """Keys of a per-plugin-kind table must be plugin kinds."""
    for kind in table:
        if kind not in PLUGIN_AXES:
            raise ValueError(f"unknown plugin kind '{kind}' (allowed: {', '.join(PLUGIN_AXES)})")
    return table


#: the plugin kinds a grid's ``params_by_dataset`` may set (a dataset's own parameters are ``params.datasets``)
PER_DATASET_KINDS = tuple(k for k in PLUGIN_AXES if k != "datasets")


def _check_per_dataset(table: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Keys under each dataset of ``params_by_dataset`` must be plugin kinds other than datasets."""
    for dataset, kinds in table.items():
        for kind in kinds:
            if kind == "datasets":
                raise ValueError(f"{dataset}.datasets: a dataset's own parameters go in params.datasets.{dataset}")
            if kind not in PER_DATASET_KINDS:
                raise ValueError(f"{dataset}: unknown plugin kind '{kind}' (allowed: {', '.join(PER_DATASET_KINDS)})")
    return table


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class SplitSpec(_Strict):
    """The evaluation split: sizes, and whether a dataset's own split files are taken or a split is drawn.

    ``mode: auto`` (the default) takes the dataset's own split (list files) where it has one and
    draws the declared sizes otherwise; ``mode: draw`` always draws them, from all items, with the
    run's seed (query, database = the rest or ``num_database``, train ⊂ database).
    """

    mode: Literal["auto", "draw"] = "auto"
    num_query: int = Field(gt=0, le=MAX_ITEMS)
    num_train: int = Field(gt=0, le=MAX_ITEMS)
    num_database: int | None = Field(None, gt=0, le=MAX_ITEMS)

    @property
    def draw(self) -> bool:
        return self.mode == "draw"

    def stage_spec(self) -> dict[str, Any]:
        """The split stage's spec; ``mode`` only when not the default, so earlier keys stay valid."""
        spec = self.model_dump()
        if not self.draw:
            del spec["mode"]
        return spec


class TargetSpec(_Strict):
    """How the split stage draws each query's target label, which every targeted attack shares.

    Candidates are the distinct label vectors that label at least ``min_count`` database items
    and share no class with the query (a query with none gets one sharing the fewest classes);
    ``zero_label`` admits the all-zero vector.  The default is SAAT's rule (``select_target_label``:
    any non-zero vector).  The CgAT grids take the CgAT group's DHTA rule (TAD ``dhta.py``):
    vectors that occur more than n_t = 9 times (``min_count: 10``, so DHTA always finds 9 distinct
    anchors instead of collapsing to P2P on rare targets), the all-zero one counted like the rest.
    """

    min_count: int = Field(1, ge=1, le=MAX_ITEMS, description="database items a target label vector must label")
    zero_label: bool = Field(False, description="the all-zero label vector may be a target")

    def stage_spec(self) -> dict[str, Any]:
        """The split stage's ``targets`` entry; none for the default rule, so earlier keys stay valid."""
        return {} if self == TargetSpec() else {"targets": self.model_dump()}


class DatasetDecl(_Strict):
    """A named dataset: a dataset plugin (``type``) with parameters and its evaluation protocol."""

    type: str
    description: str = ""
    params: dict[str, Any] = Field(default_factory=dict)
    classes: int | None = Field(None, gt=0, le=MAX_CLASSES)
    split: SplitSpec
    num_items: int | None = Field(None, gt=0, le=MAX_ITEMS,
                                  description="total items; sizes cost estimates when the data is absent")
    map_topk: int | None = Field(None, gt=0, le=MAX_ITEMS, description="MAP@k cut-off; null ranks the whole database")
    pn: list[int] = Field(default_factory=lambda: list(range(100, 1001, 100)))

    def declared_counts(self) -> dict[str, int | None]:
        """The split sizes declared: query, train, database (``None`` where not derivable)."""
        s = self.split
        database = s.num_database or (self.num_items - s.num_query if self.num_items else None)
        return {"query": s.num_query, "train": s.num_train, "database": database}

    @field_validator("pn")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if not v or any(n <= 0 or n > MAX_ITEMS for n in v):
            raise ValueError(f"must be a non-empty list of integers from 1 to {MAX_ITEMS}")
        return v


class Profile(_Strict):
    """Scales and overrides applied on top of the plugins' paper defaults.

    ``scale`` multiplies integer parameters of that name (e.g. ``epochs``, ``iterations``);
    ``set`` gives explicit values per plugin kind and name and wins over ``scale``.
    """

    description: str = ""
    scale: dict[str, float] = Field(default_factory=dict)
    set: dict[str, dict[str, dict[str, Any]]] = Field(default_factory=dict)

    @field_validator("scale")
    @classmethod
    def _scale_positive(cls, v: dict[str, float]) -> dict[str, float]:
        for name, factor in v.items():
            if factor <= 0:
                raise ValueError(f"scale for '{name}' must be positive")
            if factor > MAX_SCALE:
                raise ValueError(f"scale for '{name}' must be at most {MAX_SCALE:g}")
        return v

    _kinds = field_validator("set")(classmethod(lambda cls, v: _check_kinds(v)))


class Grid(_Strict):
    """A cross product: datasets × methods × backbones × bits × defenses × attacks × seeds.

    A plugin's parameters are resolved in layers, each over the one before: the plugin's
    defaults, scaled by the profile's ``scale``; the profile's ``set``; the grid's ``params``
    (per plugin kind and name); the grid's ``params_by_dataset`` (the same, for the cells of one
    dataset).  ``--set params.…`` edits the grid's ``params`` and drops that parameter from
    ``params_by_dataset`` (the command line wins on every dataset).

    ``transfer: true`` adds black-box transfer cells: every attack crafted on each model attacks
    every other model of the same dataset and seed (:mod:`hashbench.harness.plan`).
    """

    description: str = ""
    profile: str = "paper"
    datasets: list[str] = Field(min_length=1)
    methods: list[str] = Field(min_length=1)
    backbones: list[str] = Field(min_length=1)
    bits: list[int] = Field(min_length=1)
    defenses: list[str] = Field(min_length=1)
    attacks: list[str] = Field(default_factory=list, description="the clean evaluation always runs")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    targets: TargetSpec = Field(default_factory=TargetSpec, description="the target labels' rule (split stage)")
    transfer: StrictBool = Field(False, description="also attack every model with the adversarial queries crafted on "
                                              "each other model of the same dataset and seed (black-box transfer)")
    params: dict[str, dict[str, dict[str, Any]]] = Field(default_factory=dict)
    params_by_dataset: dict[str, dict[str, dict[str, dict[str, Any]]]] = Field(
        default_factory=dict, description="dataset → plugin kind → plugin → parameters, for that dataset's cells")

    @field_validator("bits")
    @classmethod
    def _bits(cls, v: list[int]) -> list[int]:
        if any(b <= 0 for b in v):
            raise ValueError("bit lengths must be positive")
        if any(b > MAX_BITS for b in v):
            raise ValueError(f"bit lengths must be at most {MAX_BITS}")
        return v

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        if any(not 0 <= s <= MAX_SEED for s in v):
            raise ValueError(f"seeds must be integers from 0 to {MAX_SEED}")
        return v

    _kinds = field_validator("params")(classmethod(lambda cls, v: _check_kinds(v)))
    _per_dataset = field_validator("params_by_dataset")(classmethod(lambda cls, v: _check_per_dataset(v)))

    def plugin_values(self, kind: str, name: str, dataset: str | None = None) -> dict[str, Any]:
        """The grid's values for one plugin: ``params``, then ``params_by_dataset`` of ``dataset``."""
        values = dict(self.params.get(kind, {}).get(name, {}))
        if dataset is not None:
            values.update(self.params_by_dataset.get(dataset, {}).get(kind, {}).get(name, {}))
        return values


class UnionGrid(_Strict):
    """The union of other grids' cells; a stage that several members plan is planned once.

    Each member keeps its own profile and parameters.  A cell (same coordinates) that two
    members define with different parameters is an error, reported by the planner.
    """

    description: str = ""
    union: list[str] = Field(min_length=1)


#: the grid types as tagged in pydantic error locations (removed from messages by ``_describe``)
_GRID_TAGS = ("Grid", "UnionGrid")
GridEntry = Annotated[
    Union[Annotated[Grid, Tag("Grid")], Annotated[UnionGrid, Tag("UnionGrid")]],
    Discriminator(lambda v: "UnionGrid" if isinstance(v, dict) and "union" in v else "Grid"),
]


class RegistryConfig(_Strict):
    datasets: dict[str, DatasetDecl]
    profiles: dict[str, Profile]
    grids: dict[str, GridEntry]

    @field_validator("datasets", "profiles", "grids")
    @classmethod
    def _safe_names(cls, table: dict[str, Any]) -> dict[str, Any]:
        for name in table:  # dataset and grid names become file names (cell ids, run folders)
            problem = name_problem(name)
            if problem is not None:
                raise ValueError(problem)
        return table


class Config:
    """The loaded ``registry.yaml`` and where it came from (for error messages)."""

    def __init__(self, data: RegistryConfig, path: Path) -> None:
        self.data = data
        self.path = path

    def grid(self, name: str) -> Grid | UnionGrid:
        return self._pick("grids", name)

    def members(self, name: str, grid: Grid | UnionGrid | None = None) -> list[tuple[str, Grid]]:
        """The cross-product grids of ``name`` (itself, or a union's members, flattened in order)."""
        out: list[tuple[str, Grid]] = []

        def visit(n: str, g: Grid | UnionGrid, stack: tuple[str, ...]) -> None:
            if isinstance(g, Grid):
                if all(n != seen for seen, _ in out):
                    out.append((n, g))
                return
            for i, member in enumerate(g.union):
                if member in stack:
                    cycle = " → ".join((*stack, member))
                    raise ConfigError(f"{self.path}: grids.{n}.union[{i}]: '{member}' makes a cycle ({cycle})")
                if member not in self.data.grids:
                    raise ConfigError(f"{self.path}: grids.{n}.union[{i}]: "
                                      f"{unknown_name_message('grid', member, list(self.data.grids))}")
                visit(member, self.data.grids[member], (*stack, member))

        visit(name, grid if grid is not None else self.grid(name), (name,))
        return out

    def profile(self, name: str) -> Profile:
        return self._pick("profiles", name)

    def dataset(self, name: str) -> DatasetDecl:
        return self._pick("datasets", name)

    def _pick(self, section: str, name: str):
        table = getattr(self.data, section)
        if name not in table:
            raise ConfigError(f"{self.path}: {unknown_name_message(section[:-1], name, list(table))}")
        return table[name]


def default_registry_path() -> Path:
    if os.environ.get(REGISTRY_ENV):
        return Path(os.environ[REGISTRY_ENV])
    return Path(__file__).resolve().parents[2] / "registry.yaml"


def load_config(path: str | Path | None = None) -> Config:
    """Parse and validate ``registry.yaml`` (default: the project's, or ``$HASHBENCH_REGISTRY``)."""
    path = Path(path) if path is not None else default_registry_path()
    raw = load_config_file(path, "registry file")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with 'datasets', 'profiles' and 'grids'")
    try:
        data = RegistryConfig(**raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: " + "; ".join(_describe(e) for e in exc.errors())) from None
    config = Config(data, path)
    for name, grid in data.grids.items():
        _check_profile(config, grid, f"{path}: grids.{name}")
        config.members(name)  # unknown members and cycles fail here, before any work
    return config


def _check_profile(config: Config, grid: Grid | UnionGrid, where: str) -> None:
    if isinstance(grid, Grid) and grid.profile not in config.data.profiles:
        raise ConfigError(f"{where}.profile: {unknown_name_message('profile', grid.profile, list(config.data.profiles))}")


def _describe(err: dict[str, Any]) -> str:
    loc = list(err["loc"])
    if loc and loc[0] in _GRID_TAGS:  # a grid file
        del loc[0]
    elif len(loc) > 2 and loc[0] == "grids" and loc[2] in _GRID_TAGS:
        del loc[2]
    key = ".".join(str(p) for p in loc) or "(root)"
    if err["type"] == "extra_forbidden":
        return f"{key}: unknown key"
    if err["type"] == "missing":
        return f"{key}: required key is missing"
    if err["type"] == "too_short" and err.get("input") == []:
        return f"{key}: is empty; list at least one entry"
    if err["type"] == "value_error":  # our own validators say what is wrong; a table is too long to echo
        message = err["msg"].removeprefix("Value error, ")
        if isinstance(err.get("input"), dict):
            return f"{key}: {message}"
        return f"{key}: {message} (got {excerpt(err.get('input'))})"
    return f"{key}: {err['msg']} (got {excerpt(err.get('input'))})"


# --- grids from files and command-line overrides -----------------------------------------

#: the keys of a cross-product grid, in the order users see them
GRID_KEYS: tuple[str, ...] = tuple(Grid.model_fields)
_GRID_ADAPTER: TypeAdapter = TypeAdapter(GridEntry)


def is_grid_path(value: str) -> bool:
    """Whether ``--grid value`` names a YAML file rather than a grid of the registry."""
    return value.endswith((".yaml", ".yml")) or "/" in value or os.sep in value


def load_grid_file(path: str | Path, config: Config) -> tuple[str, Grid | UnionGrid]:
    """A grid defined alone in a YAML file (the keys of one ``grids:`` entry); named after the file.

    A union in a file refers to the registry's grids.
    """
    path = Path(path)
    raw = load_config_file(path, "grid file")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with a grid's keys ({', '.join(GRID_KEYS)}) or 'union'")
    try:
        grid = _GRID_ADAPTER.validate_python(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: " + "; ".join(_describe(e) for e in exc.errors())) from None
    _check_profile(config, grid, str(path))
    name = path.stem
    config.members(name, grid)
    return name, grid


def parse_override(text: str) -> tuple[list[str], Any]:
    """``KEY=VALUE`` → (key path, value parsed as YAML: ``[a,b]`` is a list, ``5`` an int)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {excerpt(text)}: expected KEY=VALUE, e.g. attacks=[hag,sdha], bits=32 or "
                          "params.attacks.center.iterations=5")
    if len(key) > MAX_KEY_CHARS:
        raise ConfigError(f"--set {shorten(key)}: the key is longer than {MAX_KEY_CHARS} characters")
    value = load_yaml_text(raw, f"--set {key}", value=True) if raw.strip() else None
    if value is None:
        raise ConfigError(f"--set {key}: no value given")
    return key.split("."), value


#: did-you-mean here (``--set`` keys, plugin kinds, parameters, axis members) has always asked for
#: closer matches than the registries' :data:`~hashbench.api.registry.CLOSE_CUTOFF`, and an empty
#: list of choices stays empty
_CUTOFF = 0.6


def _did_you_mean(what: str, name: str, choices: list[str] | tuple[str, ...], of: str = "") -> str:
    return unknown_name_message(what, name, choices, of=of, cutoff=_CUTOFF, none="")


def not_on_axis(kind: str, name: str, axis: list[str] | tuple[str, ...]) -> str:
    """"'<name>' is not on the grid's <kind> axis. Did you mean …? Choices: …" (``kind`` plural)."""
    hint = did_you_mean(name, axis, cutoff=_CUTOFF, none="")
    return f"'{shorten(name)}' is not on the grid's {kind} axis.{hint}"


def apply_overrides(config: Config, members: list[tuple[str, Grid]], overrides: list[str]) -> list[tuple[str, Grid]]:
    """Apply ``--set KEY=VALUE`` overrides to every member grid, in order.

    Axis keys (``attacks=[hag,sdha]``; a scalar means a one-element list) and ``profile`` /
    ``description`` replace the value in every member.  ``params.<kind>.<name>.<param>=VALUE``
    (or ``params.<kind>.<name>={…}``) sets a plugin parameter in every member that has
    ``<name>`` on its ``<kind>`` axis, on every dataset (it replaces that parameter's
    ``params_by_dataset`` values); ``params_by_dataset.<dataset>.<kind>.<name>.<param>=VALUE``
    sets it for one dataset's cells.  Every error names the key, with did-you-mean, as a
    :class:`ConfigError`.
    """
    for text in overrides:
        path, value = parse_override(text)
        key = ".".join(path)
        head = path[0]
        if head not in GRID_KEYS:
            raise ConfigError(f"--set {key}: {_did_you_mean('grid key', head, GRID_KEYS)}")
        if head == "params":
            members = _override_param(config, members, path[1:], value, key)
            continue
        if head == "params_by_dataset":
            datasets = sorted({d for _, g in members for d in g.datasets})
            if len(path) < 2:
                raise ConfigError(f"--set {key}: expected {_PER_DATASET_EXAMPLE}")
            if path[1] not in datasets:
                raise ConfigError(f"--set {key}: {not_on_axis('datasets', path[1], datasets)}")
            members = _override_param(config, members, path[2:], value, key, dataset=path[1])
            continue
        if len(path) > 1:
            raise ConfigError(f"--set {key}: '{head}' has no sub-keys; write --set {head}=VALUE")
        if head in GRID_AXES and not isinstance(value, list):
            value = [value]
        if head == "profile" and value not in config.data.profiles:
            raise ConfigError(f"--set profile: {unknown_name_message('profile', str(value), list(config.data.profiles))}")
        members = [(name, _revalidate(grid, {head: value, **_narrowed_params(grid, head, value)}, f"--set {key}"))
                   for name, grid in members]
    return members


def _narrowed_params(grid: Grid, axis: str, values: list[Any]) -> dict[str, Any]:
    """The grid's ``params`` and ``params_by_dataset`` without the plugins (or datasets) that an
    axis override took off ``axis``: ``--set defenses=[none]`` on a grid that tunes ``cgat`` runs
    without cgat, not into an error about its parameters."""
    if axis not in PLUGIN_AXES:
        return {}
    keep = set(map(str, values))
    params = {kind: ({n: v for n, v in table.items() if n in keep} if kind == axis else table)
              for kind, table in grid.params.items()}
    if axis == "datasets":
        by_dataset = {d: kinds for d, kinds in grid.params_by_dataset.items() if d in keep}
    else:
        by_dataset = {d: {kind: ({n: v for n, v in table.items() if n in keep} if kind == axis else table)
                          for kind, table in kinds.items()}
                      for d, kinds in grid.params_by_dataset.items()}
    return {"params": params, "params_by_dataset": by_dataset}


def _revalidate(grid: Grid, update: dict[str, Any], where: str) -> Grid:
    try:
        return Grid(**{**grid.model_dump(), **update})
    except ValidationError as exc:
        problems = [f"{err['msg']} (got {excerpt(err.get('input'))})" for err in exc.errors()]
        raise ConfigError(f"{where}: " + "; ".join(problems)) from None


_PER_DATASET_EXAMPLE = ("params_by_dataset.<dataset>.<kind>.<name>.<param>=VALUE "
                        "(e.g. params_by_dataset.nuswide21.attacks.prosgan.rec_weight=50)")


def _override_param(config: Config, members: list[tuple[str, Grid]], path: list[str], value: Any,
                    key: str, dataset: str | None = None) -> list[tuple[str, Grid]]:
    """``path`` = [kind, name] or [kind, name, param]: into ``params``, or ``params_by_dataset`` of ``dataset``."""
    if len(path) not in (2, 3):
        raise ConfigError(f"--set {key}: expected " + (_PER_DATASET_EXAMPLE if dataset is not None else
                          "params.<kind>.<name>.<param>=VALUE (e.g. params.attacks.center.iterations=5)"))
    kind, name = path[0], path[1]
    kinds = PLUGIN_AXES if dataset is None else PER_DATASET_KINDS
    if dataset is not None and kind == "datasets":
        raise ConfigError(f"--set {key}: a dataset's own parameters are set with params.datasets.{dataset}.<param>")
    if kind not in kinds:
        raise ConfigError(f"--set {key}: {_did_you_mean('plugin kind', kind, kinds)}")
    having = [g for _, g in members if dataset is None or dataset in g.datasets]
    on_axis = sorted({n for g in having for n in getattr(g, kind)})
    if name not in on_axis:
        raise ConfigError(f"--set {key}: {not_on_axis(kind, name, on_axis)}")
    if len(path) == 3:
        check_param_name(config, kind, name, path[2], f"--set {key}")
        values = {path[2]: value}
    elif isinstance(value, dict):
        for param in value:
            check_param_name(config, kind, name, str(param), f"--set {key}")
        values = value
    else:
        raise ConfigError(f"--set {key}: expected a mapping of parameters, e.g. {key}={{iterations: 5}}")
    return set_plugin_params(members, kind, name, values, f"--set {key}", dataset=dataset)


def set_plugin_params(members: list[tuple[str, Grid]], kind: str, name: str, values: dict[str, Any], where: str,
                      dataset: str | None = None) -> list[tuple[str, Grid]]:
    """``members`` with the parameters ``values`` of plugin ``name`` (of ``kind``, a grid key) set in
    every member that has ``name`` on its ``kind`` axis.

    Without ``dataset`` they go into ``params`` and replace those parameters' ``params_by_dataset``
    values (set on every dataset); with ``dataset`` they go into that dataset's ``params_by_dataset``,
    in the members that have it.  A member that no longer validates is a :class:`ConfigError`
    starting with ``where`` (the option that asked, e.g. ``--set params.attacks.center.iterations``).
    """
    out = []
    for member, grid in members:
        if name in getattr(grid, kind) and (dataset is None or dataset in grid.datasets):
            params = {k: {n: dict(v) for n, v in table.items()} for k, table in grid.params.items()}
            by_dataset = {d: {k: {n: dict(v) for n, v in table.items()} for k, table in tables.items()}
                          for d, tables in grid.params_by_dataset.items()}
            if dataset is None:
                params.setdefault(kind, {}).setdefault(name, {}).update(values)
                for table in by_dataset.values():  # the command line wins on every dataset
                    for param in values:
                        table.get(kind, {}).get(name, {}).pop(param, None)
            else:
                by_dataset.setdefault(dataset, {}).setdefault(kind, {}).setdefault(name, {}).update(values)
            grid = _revalidate(grid, {"params": params, "params_by_dataset": by_dataset}, where)
        out.append((member, grid))
    return out


def check_param_name(config: Config, kind: str, name: str, param: str, where: str) -> None:
    """Did-you-mean for a parameter name, when the plugin is registered (else the planner reports it);
    the error starts with ``where``."""
    from hashbench import plugins  # here, not at the top: the CLI reads registry.yaml without importing torch

    plugin = config.dataset(name).type if kind == "datasets" else name
    try:
        cls = plugins.BY_KIND[kind].get(plugin)
    except PluginError:
        return
    fields = sorted(cls.Params.model_fields)
    if param not in fields:
        of = f" of {kind[:-1]} '{plugin}'"
        raise ConfigError(f"{where}: {_did_you_mean('parameter', param, fields, of)}")
