"""``registry.yaml``: dataset declarations, profiles and grids, validated with pointed errors.

Every error names the file, the key path and what is allowed.  Plugin names in grids are
checked against the plugin registries (with did-you-mean) and plugin parameters against
each plugin's schema, before any work starts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ConfigError
from .registry import unknown_name_message

REGISTRY_ENV = "HASHBENCH_REGISTRY"
PLUGIN_KINDS = ("datasets", "methods", "backbones", "defenses", "attacks")


def _check_kinds(table: dict[str, Any]) -> dict[str, Any]:
    """Keys of a per-plugin-kind table must be plugin kinds."""
    for kind in table:
        if kind not in PLUGIN_KINDS:
            raise ValueError(f"unknown plugin kind '{kind}' (allowed: {', '.join(PLUGIN_KINDS)})")
    return table


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SplitSpec(_Strict):
    num_query: int = Field(gt=0)
    num_train: int = Field(gt=0)
    num_database: int | None = Field(None, gt=0)


class DatasetDecl(_Strict):
    """A named dataset: a dataset plugin (``type``) with parameters and its evaluation protocol."""

    type: str
    description: str = ""
    params: dict[str, Any] = Field(default_factory=dict)
    classes: int | None = Field(None, gt=0)
    split: SplitSpec
    map_topk: int | None = Field(None, gt=0, description="MAP@k cut-off; null ranks the whole database")
    pn: list[int] = Field(default_factory=lambda: list(range(100, 1001, 100)))

    @field_validator("pn")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if not v or any(n <= 0 for n in v):
            raise ValueError("must be a non-empty list of positive integers")
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
        return v

    _kinds = field_validator("set")(classmethod(lambda cls, v: _check_kinds(v)))


class Grid(_Strict):
    """A cross product: datasets × methods × backbones × bits × defenses × attacks × seeds."""

    description: str = ""
    profile: str = "paper"
    datasets: list[str] = Field(min_length=1)
    methods: list[str] = Field(min_length=1)
    backbones: list[str] = Field(min_length=1)
    bits: list[int] = Field(min_length=1)
    defenses: list[str] = Field(min_length=1)
    attacks: list[str] = Field(default_factory=list, description="the clean evaluation always runs")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    params: dict[str, dict[str, dict[str, Any]]] = Field(default_factory=dict)

    @field_validator("bits")
    @classmethod
    def _bits(cls, v: list[int]) -> list[int]:
        if any(b <= 0 for b in v):
            raise ValueError("bit lengths must be positive")
        return v

    _kinds = field_validator("params")(classmethod(lambda cls, v: _check_kinds(v)))


class RegistryConfig(_Strict):
    datasets: dict[str, DatasetDecl]
    profiles: dict[str, Profile]
    grids: dict[str, Grid]


class Config:
    """The loaded ``registry.yaml`` and where it came from (for error messages)."""

    def __init__(self, data: RegistryConfig, path: Path) -> None:
        self.data = data
        self.path = path

    def grid(self, name: str) -> Grid:
        return self._pick("grids", name)

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
    return Path(__file__).resolve().parent.parent / "registry.yaml"


def load_config(path: str | Path | None = None) -> Config:
    """Parse and validate ``registry.yaml`` (default: the project's, or ``$HASHBENCH_REGISTRY``)."""
    path = Path(path) if path is not None else default_registry_path()
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read registry file {path}: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with 'datasets', 'profiles' and 'grids'")
    try:
        data = RegistryConfig(**raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: " + "; ".join(_describe(e) for e in exc.errors())) from None
    config = Config(data, path)
    for name, grid in data.grids.items():
        if grid.profile not in data.profiles:
            raise ConfigError(
                f"{path}: grids.{name}.profile: unknown profile '{grid.profile}' "
                f"(allowed: {', '.join(data.profiles)})"
            )
    return config


def _describe(err: dict[str, Any]) -> str:
    key = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        return f"{key}: unknown key"
    if err["type"] == "missing":
        return f"{key}: required key is missing"
    return f"{key}: {err['msg']} (got {err.get('input')!r})"
