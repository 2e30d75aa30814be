"""Typed, validated hyper-parameter schemas shared by every plugin."""

from __future__ import annotations

from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from hashbench.errors import ConfigError, excerpt, shorten

#: the largest magnitude of any integer parameter (a C int: tensor sizes, loop counts, seeds)
MAX_INT = 2**31 - 1
#: upper bounds shared by the plugins' schemas (``Field(..., le=MAX_EPOCHS)``)
MAX_EPOCHS = 10_000
MAX_ITERATIONS = 1_000_000
MAX_BATCH_SIZE = 65_536
MAX_WIDTH = 65_536


class Params(BaseModel):
    """Base schema: unknown keys are rejected and values are immutable once validated.

    Subclasses declare fields whose defaults are the paper's values.  Every float must be
    finite (``nan`` and ``inf`` are refused) and every integer, also inside a tuple or list,
    within ±:data:`MAX_INT`; subclasses add tighter bounds with ``Field(gt=…, le=…)``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _bounded_ints(cls, value: Any) -> Any:
        items = value if isinstance(value, (tuple, list)) else (value,)
        for item in items:
            if isinstance(item, int) and not isinstance(item, bool) and abs(item) > MAX_INT:
                raise ValueError(f"must be between {-MAX_INT} and {MAX_INT}")
        return value


def validate_params(schema: type[Params], values: Mapping[str, Any] | None, where: str) -> Params:
    """Build ``schema`` from ``values``; raise a ConfigError that names ``where`` and each bad key."""
    try:
        return schema(**dict(values or {}))
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = shorten(".".join(str(p) for p in err["loc"])) or "(root)"
            if err["type"] == "extra_forbidden":
                allowed = ", ".join(sorted(schema.model_fields)) or "none"
                problems.append(f"unknown key '{key}' (allowed: {allowed})")
            else:
                problems.append(f"'{key}': {err['msg']} (got {excerpt(err.get('input'))})")
        raise ConfigError(f"{where}: " + "; ".join(problems)) from None


def params_dict(params: Params) -> dict[str, Any]:
    """The fully resolved parameters as plain JSON-able values (used in cache keys and records)."""
    return params.model_dump(mode="json")
