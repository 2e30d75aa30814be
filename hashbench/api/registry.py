"""One generic typed registry of plugins, discovered lazily through entry points.

Each plugin kind (methods, backbones, datasets, attacks, defenses) has one ``Registry``
instance.  Built-in plugins are registered through the same entry-point groups that
third-party distributions use, so the built-ins prove the plugin path.  An entry point is
imported only when its plugin is first asked for; one that fails to import is reported
with its distribution and does not stop work that does not use it.
"""

from __future__ import annotations

import difflib
import importlib.metadata as md
import re
from dataclasses import dataclass
from typing import Any, Generic, Iterator, Mapping, TypeVar

from hashbench.errors import PluginError, excerpt, shorten

T = TypeVar("T")

#: The plugin kinds, by their grid keys, in the order ``hashbench list`` shows them; each has one
#: :class:`Registry` in :mod:`hashbench.plugins` (``BY_KIND``).  Defined here, with no plugin
#: base class imported, so that the command line and ``registry.yaml`` validation can name the
#: kinds without importing torch.
PLUGIN_KINDS: tuple[str, ...] = ("methods", "backbones", "datasets", "attacks", "defenses")

#: Plugin, dataset and grid names end up in file names (cell ids, record files, run folders),
#: so they are restricted to characters that cannot leave a folder or break a shell.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")


def name_problem(name: object) -> str | None:
    """Why ``name`` cannot name a plugin, dataset or grid, or ``None`` if it can."""
    if isinstance(name, str) and NAME_PATTERN.fullmatch(name):
        return None
    return (f"the name {excerpt(name)} is not allowed: names become parts of file names, so they are 1–64 "
            "letters, digits, '.', '_', '+' or '-', starting with a letter or digit")


#: How close a name must be to a choice to be suggested (:func:`difflib.get_close_matches`' cutoff).
CLOSE_CUTOFF = 0.5


def did_you_mean(name: str, choices: list[str] | tuple[str, ...], *, cutoff: float = CLOSE_CUTOFF,
                 none: str = "(none registered)") -> str:
    """" Did you mean '<close>' or …? Choices: a, b." (no question without a close choice; ``none``
    stands for an empty list of choices): the project's one did-you-mean."""
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=cutoff)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return f"{hint} Choices: {', '.join(choices) or none}."


def unknown_name_message(kind: str, name: str, choices: list[str] | tuple[str, ...], *, of: str = "",
                         cutoff: float = CLOSE_CUTOFF, none: str = "(none registered)") -> str:
    """"unknown <kind> '<name>'<of>. Did you mean …? Choices: …" for any named thing; ``of`` says
    whose (" of attack 'center'"), ``cutoff`` and ``none`` are :func:`did_you_mean`'s."""
    return f"unknown {kind} '{shorten(name)}'{of}.{did_you_mean(name, choices, cutoff=cutoff, none=none)}"


@dataclass(frozen=True)
class PluginInfo:
    """What ``hashbench list`` shows about one plugin."""

    name: str
    kind: str
    distribution: str
    version: str
    description: str
    paper: str
    error: str | None = None

    @property
    def origin(self) -> str:
        return f"{self.distribution} {self.version}"


@dataclass
class _Entry:
    name: str
    distribution: str
    version: str
    entry_point: md.EntryPoint | None = None
    obj: Any = None
    error: str | None = None


class Registry(Generic[T]):
    """A name → plugin-class mapping for one plugin kind.

    ``base`` is the class every plugin of this kind must subclass; loading checks it.
    """

    def __init__(self, kind: str, group: str, base: type[T]) -> None:
        self.kind = kind
        self.group = group
        self.base = base
        self._entries: dict[str, _Entry] = {}
        self._discovered = False
        self._frozen = False

    # -- discovery -----------------------------------------------------------------
    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        for ep in md.entry_points(group=self.group):
            if ep.name in self._entries:
                continue  # an explicit register() wins over a later-discovered entry point
            dist = ep.dist
            self._entries[ep.name] = _Entry(
                name=ep.name,
                distribution=dist.name if dist is not None else "unknown",
                version=dist.version if dist is not None else "unknown",
                entry_point=ep,
                error=name_problem(ep.name),  # listed (so it is reported) but never loaded
            )

    def register(self, name: str, obj: type[T], *, distribution: str = "local", version: str = "0") -> type[T]:
        """Register ``obj`` under ``name`` directly (tests, notebooks); entry points are the normal path."""
        if self._frozen:
            raise PluginError(f"the {self.kind} registry is frozen; cannot register '{name}'")
        problem = name_problem(name)
        if problem is not None:
            raise PluginError(f"cannot register {self.kind} plugin: {problem}")
        self._check(name, obj)
        self._entries[name] = _Entry(name=name, distribution=distribution, version=version, obj=obj)
        return obj

    def unregister(self, name: str) -> None:
        if self._frozen:
            raise PluginError(f"the {self.kind} registry is frozen; cannot unregister '{name}'")
        self._entries.pop(name, None)

    def freeze(self) -> None:
        """Forbid further (un)registration, e.g. once a run has planned its stages."""
        self._discover()
        self._frozen = True

    # -- lookup --------------------------------------------------------------------
    def names(self) -> list[str]:
        self._discover()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._discover()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def unknown_name_message(self, name: str) -> str:
        return unknown_name_message(self.kind, name, self.names())

    def _entry(self, name: str) -> _Entry:
        self._discover()
        entry = self._entries.get(name)
        if entry is None:
            raise PluginError(self.unknown_name_message(name))
        return entry

    def get(self, name: str) -> type[T]:
        """The plugin class registered as ``name``, importing its entry point on first use."""
        entry = self._entry(name)
        if entry.obj is None and entry.error is None:
            try:
                obj = entry.entry_point.load()  # type: ignore[union-attr]
                self._check(name, obj)
                entry.obj = obj
            except PluginError as exc:
                entry.error = str(exc)
            except Exception as exc:  # any import-time failure of third-party code
                entry.error = f"{type(exc).__name__}: {exc}"
        if entry.error is not None:
            raise PluginError(
                f"{self.kind} plugin '{name}' from distribution {entry.distribution} {entry.version} "
                f"failed to load: {entry.error}"
            )
        return entry.obj

    def origin(self, name: str) -> tuple[str, str]:
        """(distribution, version) that provides ``name``; part of every cache key."""
        entry = self._entry(name)
        return entry.distribution, entry.version

    def create(self, name: str, params: Mapping[str, Any] | None = None) -> T:
        """Instantiate plugin ``name`` with validated ``params`` (defaults are the paper's)."""
        cls = self.get(name)
        return cls.from_params(params or {}, where=f"{self.kind} '{name}'")  # type: ignore[attr-defined]

    def info(self, name: str) -> PluginInfo:
        entry = self._entry(name)
        try:
            cls = self.get(name)
        except PluginError:
            return PluginInfo(name, self.kind, entry.distribution, entry.version, "", "", entry.error)
        return PluginInfo(
            name,
            self.kind,
            entry.distribution,
            entry.version,
            getattr(cls, "description", ""),
            getattr(cls, "paper", ""),
        )

    def infos(self) -> list[PluginInfo]:
        return [self.info(n) for n in self.names()]

    def _check(self, name: str, obj: Any) -> None:
        if not (isinstance(obj, type) and issubclass(obj, self.base)):
            raise PluginError(
                f"{self.kind} plugin '{name}' must be a subclass of {self.base.__module__}.{self.base.__qualname__}, "
                f"got {obj!r}"
            )
