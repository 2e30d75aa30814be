"""The base every plugin kind shares: a name, a description, the paper, a typed params schema."""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

from hashbench.api.params import Params, params_dict, validate_params


class Plugin:
    """Base class of every plugin.

    Subclasses set ``description`` and ``paper`` and nest a ``Params`` schema (a
    :class:`hashbench.api.params.Params` subclass) whose defaults are the paper's values.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    Params: ClassVar[type[Params]] = Params

    def __init__(self, params: Params | None = None) -> None:
        self.params = params if params is not None else self.Params()

    @classmethod
    def from_params(cls, values: Mapping[str, Any], where: str | None = None) -> "Plugin":
        return cls(validate_params(cls.Params, values, where or f"{cls.__name__} parameters"))

    def resolved_params(self) -> dict[str, Any]:
        return params_dict(self.params)
