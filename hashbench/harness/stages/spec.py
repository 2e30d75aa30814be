"""Typed stage specs: what a stage computes, fully resolved, and the key that names its artifact.

A stage's spec is one frozen dataclass per stage kind (the ``spec`` modules of
:mod:`hashbench.harness.stages`); :meth:`StageSpec.to_json` is the JSON the artifact key hashes,
so a spec field is part of the key exactly when it is in that JSON (``amp`` only when set).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

from hashbench.harness.store import artifact_key, canonical_json

#: the spec fields that name a plugin, in the order that picks the plugin a stage's timing is filed under
PLUGIN_PARTS = ("attack", "defense", "method", "backbone", "dataset")

_OMIT_NONE = {"omit_none": True}


def amp_field() -> Any:
    """The ``amp`` field of a spec: part of the key only when mixed precision is on."""
    return field(default=None, metadata=_OMIT_NONE)


@dataclass(frozen=True)
class PluginSpec:
    """A plugin as a stage runs it: registry ``name``, resolved ``params``, ``origin`` (distribution, version)."""

    name: str
    params: Mapping[str, Any]
    origin: tuple[str, str]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "params": dict(self.params), "origin": list(self.origin)}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> PluginSpec:
        return cls(value["name"], dict(value["params"]), tuple(value.get("origin") or ("unknown", "unknown")))


@dataclass(frozen=True)
class DatasetSpec(PluginSpec):
    """A declared dataset: ``name`` as the registry declares it, ``type`` the dataset plugin that opens it."""

    type: str = ""

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "type": self.type}

    @property
    def key(self) -> str:
        """Identity of the opened dataset: its plugin type and resolved parameters."""
        return canonical_json({"type": self.type or self.name, "params": dict(self.params)})


@dataclass(frozen=True)
class EvaluatedAttack:
    """The attack an evaluation scores: its name and whether it is targeted (t-MAP is its measure)."""

    name: str
    targeted: bool

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "targeted": self.targeted}


@dataclass(frozen=True)
class StageSpec:
    """Base of the per-kind specs; ``kind`` is the stage kind the subclass describes."""

    kind: ClassVar[str]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None and f.metadata.get("omit_none"):
                continue
            out[f.name] = value.to_json() if hasattr(value, "to_json") else value
        return out

    def plugins(self) -> dict[str, PluginSpec]:
        """The plugins this stage runs, by spec field (``method``, ``backbone``, ``defense``, ``attack``)."""
        return {f.name: v for f in dataclasses.fields(self)
                if isinstance(v := getattr(self, f.name), PluginSpec) and not isinstance(v, DatasetSpec)}

    @property
    def plugin(self) -> str:
        """The plugin a timing of this stage is filed under: the first of :data:`PLUGIN_PARTS` it has."""
        for part in PLUGIN_PARTS:
            value = getattr(self, part, None)
            if value is not None:
                return value.name
        return ""


@dataclass(eq=False)
class Stage:
    """One node of the plan: a typed spec and the stages whose artifacts it reads."""

    spec: StageSpec
    inputs: dict[str, Stage] = field(default_factory=dict)
    key: str = field(init=False)

    def __post_init__(self) -> None:
        inputs = {n: s.key for n, s in sorted(self.inputs.items())}
        self.key = artifact_key(self.kind, {**self.spec.to_json(), "inputs": inputs})

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def label(self) -> str:
        names = [v.name for part in ("dataset", "method", "defense", "attack")
                 if (v := getattr(self.spec, part, None)) is not None]
        return f"{self.kind} {' '.join(names)} [{self.key[:8]}]"


def split_stage(stage: Stage) -> Stage:
    """The split ``stage`` draws from: itself, or its ``split`` input (every other kind has one)."""
    return stage if stage.kind == "split" else stage.inputs["split"]
