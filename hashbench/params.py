"""Typed, validated hyper-parameter schemas shared by every plugin."""

from __future__ import annotations

from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import ConfigError


class Params(BaseModel):
    """Base schema: unknown keys are rejected and values are immutable once validated.

    Subclasses declare fields whose defaults are the paper's values.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def validate_params(schema: type[Params], values: Mapping[str, Any] | None, where: str) -> Params:
    """Build ``schema`` from ``values``; raise a ConfigError that names ``where`` and each bad key."""
    try:
        return schema(**dict(values or {}))
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "(root)"
            if err["type"] == "extra_forbidden":
                allowed = ", ".join(sorted(schema.model_fields)) or "none"
                problems.append(f"unknown key '{key}' (allowed: {allowed})")
            else:
                problems.append(f"'{key}': {err['msg']} (got {err.get('input')!r})")
        raise ConfigError(f"{where}: " + "; ".join(problems)) from None


def params_dict(params: Params) -> dict[str, Any]:
    """The fully resolved parameters as plain JSON-able values (used in cache keys and records)."""
    return params.model_dump(mode="json")
