"""The one loader of configuration YAML: ``registry.yaml``, grid files and ``--set`` values.

Configuration comes from users and from files received from others, so the loader accepts
only what a configuration needs and refuses the rest with one line (a :class:`ConfigError`):

- a regular file of at most :data:`MAX_CONFIG_BYTES`; a folder, a named pipe or a device
  (``/dev/zero``) is refused before anything is read;
- UTF-8 text (a leading byte-order mark is allowed); other bytes are reported with their
  byte offset;
- plain scalars, lists and mappings: no tags at all (``!!binary``, ``!!python/…``, ``!!set``,
  ``!!str``, ``!custom``), no merge keys (``<<``); plain scalars resolve as
  ``yaml.safe_load`` resolves them (``16`` an int, ``0.5`` a float, ``true`` a bool, ``null``
  ``None``), except that dates and times stay strings;
- no key twice in one mapping (the message gives both lines);
- at most :data:`MAX_DEPTH` levels of nesting, checked while the events stream in, so no
  input reaches Python's recursion limit;
- anchors and aliases, as long as the aliases expand to at most :data:`MAX_ALIAS_NODES`
  values in all (a "billion laughs" stops after a few events).

Error messages quote the user's input through :func:`excerpt` / :func:`shorten`, never in full.
"""

from __future__ import annotations

import codecs
import copy
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
import yaml.reader
from yaml.constructor import SafeConstructor
from yaml.events import (AliasEvent, CollectionStartEvent, DocumentStartEvent, MappingEndEvent, MappingStartEvent,
                         ScalarEvent, SequenceEndEvent)
from yaml.nodes import ScalarNode
from yaml.resolver import Resolver

from hashbench.errors import EXCERPT_CHARS, ConfigError, excerpt, shorten

#: the largest configuration file read (a registry is ~10 KB); larger ones are refused unread
MAX_CONFIG_BYTES = 1 << 20
#: the deepest nesting of lists and mappings (a registry needs 6 levels)
MAX_DEPTH = 64
#: how many values all aliases together may expand to (each alias counts its anchor's size)
MAX_ALIAS_NODES = 10_000

_YAML_PREFIX = "tag:yaml.org,2002:"
_PLAIN_TAGS = {"int", "float", "bool", "null"}  # resolved and constructed as yaml.safe_load does
_RESOLVER = Resolver()
_CONSTRUCTOR = SafeConstructor()


def read_config_text(path: str | Path, what: str) -> str:
    """The text of the configuration file ``path``; ``what`` ("registry file") names it in errors.

    Opens without blocking and checks the opened file, so a named pipe cannot hang the read
    and a device or an oversize file is never read.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None
    except ValueError:  # a NUL byte in the path
        raise ConfigError(f"cannot read {what} {excerpt(str(path))}: the path holds a NUL byte") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"cannot read {what} {path}: it is {_file_kind(info.st_mode)}, not a regular file")
        if info.st_size > MAX_CONFIG_BYTES:
            raise ConfigError(_too_big(path, what, info.st_size))
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_CONFIG_BYTES:  # the file may grow after fstat: read at most one byte past the limit
            chunk = os.read(fd, MAX_CONFIG_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(_too_big(path, what, size))
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    return decode_utf8(b"".join(chunks), str(path))


def decode_utf8(data: bytes, source: str) -> str:
    """``data`` as UTF-8 text (a byte-order mark is dropped); else a ConfigError with the byte offset."""
    skip = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = skip + exc.start
        line = data.count(b"\n", 0, offset) + 1
        raise ConfigError(f"{source}: not UTF-8: byte 0x{data[offset]:02x} at byte offset {offset} (line {line}); "
                          "save the file as UTF-8") from None


def load_config_file(path: str | Path, what: str) -> Any:
    """Read and parse the configuration file ``path`` (see the module's rules)."""
    return load_yaml_text(read_config_text(path, what), str(path))


def load_yaml_text(text: str, source: str, *, value: bool = False) -> Any:
    """Parse ``text`` with the module's rules; every error is one line starting with ``source``.

    A file's errors read ``source:line:column: invalid YAML: …``; with ``value`` (a one-line
    ``--set`` value) they read ``source: cannot parse '<excerpt>' as a YAML value: … (column N)``.
    """
    try:
        if len(text) > MAX_CONFIG_BYTES:
            raise _Refused(None, f"{len(text)} characters is more than the {_limit()} a configuration may have")
        return _parse(text)
    except _Refused as exc:
        if value:
            at = f" (column {exc.mark.column + 1})" if exc.mark is not None else ""
            raise ConfigError(f"{source}: cannot parse {excerpt(text)} as a YAML value: {exc.problem}{at}") from None
        if exc.mark is None:
            raise ConfigError(f"{source}: {exc.problem}") from None
        raise ConfigError(f"{source}:{exc.mark.line + 1}:{exc.mark.column + 1}: invalid YAML: {exc.problem}") from None


class _Refused(Exception):
    """Why a text is refused, and where (a PyYAML mark, or ``None`` when the problem says where)."""

    def __init__(self, mark: Any, problem: str) -> None:
        super().__init__(problem)
        self.mark = mark
        self.problem = problem


@dataclass
class _Position:
    line: int
    column: int


def _parse(text: str) -> Any:
    builder = _Builder()
    loader = None
    try:
        loader = yaml.SafeLoader(text)
        while loader.check_event():
            builder.feed(loader.get_event())
    except yaml.MarkedYAMLError as exc:
        problem = " ".join(str(exc.problem or exc).split())
        raise _Refused(exc.problem_mark, shorten(problem, 2 * EXCERPT_CHARS)) from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow
        position = exc.position if isinstance(exc.position, int) else 0
        line = text.count("\n", 0, position)
        column = position - (text.rfind("\n", 0, position) + 1)
        code = exc.character if isinstance(exc.character, int) else 0
        raise _Refused(_Position(line, column), f"the character U+{code:04X} is not allowed "
                       "(control characters are not)") from None
    except yaml.YAMLError as exc:
        raise _Refused(None, f"invalid YAML: {shorten(' '.join(str(exc).split()), 2 * EXCERPT_CHARS)}") from None
    except RecursionError:  # the builder bounds nesting before this can happen; never a traceback
        raise _Refused(None, f"nested too deeply (at most {MAX_DEPTH} levels)") from None
    finally:
        if loader is not None:
            loader.dispose()
    return builder.result


def _too_big(path: Path, what: str, size: int) -> str:
    return f"cannot read {what} {path}: it has {size} bytes, more than the {_limit()} a configuration file may have"


def _limit() -> str:
    return f"{MAX_CONFIG_BYTES // (1 << 20)} MiB" if MAX_CONFIG_BYTES % (1 << 20) == 0 else f"{MAX_CONFIG_BYTES} bytes"


def _file_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a plain file"


def _show_tag(tag: str) -> str:
    return "!!" + tag[len(_YAML_PREFIX):] if tag.startswith(_YAML_PREFIX) else tag


@dataclass
class _Frame:
    """A list or mapping being built, with what error messages need to know about it."""

    value: dict | list
    label: str  # the key path of this collection, for messages
    anchor: str | None
    size: int = 1  # values in it, itself included, aliases expanded
    key: Any = None
    has_key: bool = False
    key_marks: dict[Any, Any] = field(default_factory=dict)


class _Builder:
    """Builds plain Python values from PyYAML's event stream, iteratively, with the module's limits."""

    def __init__(self) -> None:
        self.stack: list[_Frame] = []
        self.anchors: dict[str, tuple[Any, int]] = {}
        self.expanded = 0
        self.documents = 0
        self.result: Any = None

    def fail(self, mark: Any, problem: str) -> _Refused:
        return _Refused(mark, problem)

    def feed(self, event: yaml.Event) -> None:
        if isinstance(event, DocumentStartEvent):
            self.documents += 1
            if self.documents > 1:
                raise self.fail(event.start_mark, "a second YAML document ('---'); a configuration is one document")
        elif isinstance(event, AliasEvent):
            self._alias(event)
        elif isinstance(event, ScalarEvent):
            self._check_tag(event)
            value, merge = self._scalar(event)
            if merge and self.stack and isinstance(self.stack[-1].value, dict) and not self.stack[-1].has_key:
                raise self.fail(event.start_mark, "merge keys ('<<') are not supported; write the keys out")
            self._anchor(event, value, 1)
            self._add(value, 1, event.start_mark)
        elif isinstance(event, CollectionStartEvent):
            self._check_tag(event)
            if len(self.stack) >= MAX_DEPTH:
                raise self.fail(event.start_mark, f"nested more than {MAX_DEPTH} levels deep")
            label = self._child_label(event.start_mark)
            value: dict | list = {} if isinstance(event, MappingStartEvent) else []
            self.stack.append(_Frame(value, label, event.anchor))
        elif isinstance(event, (MappingEndEvent, SequenceEndEvent)):
            frame = self.stack.pop()
            if frame.anchor is not None:
                self.anchors[frame.anchor] = (frame.value, frame.size)
            self._add(frame.value, frame.size, event.start_mark)
        # StreamStart/End and DocumentEnd carry nothing

    def _check_tag(self, event: ScalarEvent | CollectionStartEvent) -> None:
        if event.tag is not None:
            raise self.fail(event.start_mark, f"the tag {excerpt(_show_tag(event.tag))} is not allowed; "
                            "a configuration holds plain values, lists and mappings only")

    def _scalar(self, event: ScalarEvent) -> tuple[Any, bool]:
        """The value of a plain or quoted scalar, and whether it is a merge key ``<<``."""
        if not event.implicit[0]:  # quoted, or a block scalar: a string
            return event.value, False
        tag = _RESOLVER.resolve(ScalarNode, event.value, (True, False))
        name = tag[len(_YAML_PREFIX):] if tag.startswith(_YAML_PREFIX) else ""
        if name == "merge":
            return event.value, True
        if name not in _PLAIN_TAGS:  # str, and timestamps and '=' kept as the text written
            return event.value, False
        try:
            return _CONSTRUCTOR.yaml_constructors[tag](_CONSTRUCTOR, ScalarNode(tag, event.value)), False
        except ValueError:  # e.g. an integer of more digits than Python converts
            raise self.fail(event.start_mark, f"the number {excerpt(event.value)} is too long") from None

    def _alias(self, event: AliasEvent) -> None:
        if event.anchor not in self.anchors:
            inside = any(frame.anchor == event.anchor for frame in self.stack)
            why = "refers to the value it is in" if inside else "has no anchor before it"
            raise self.fail(event.start_mark, f"the alias *{shorten(str(event.anchor))} {why}")
        value, size = self.anchors[event.anchor]
        self.expanded += size
        if self.expanded > MAX_ALIAS_NODES:
            raise self.fail(event.start_mark, f"the aliases expand to more than {MAX_ALIAS_NODES} values "
                            "(an alias bomb?); write the values out")
        self._add(copy.deepcopy(value), size, event.start_mark)

    def _anchor(self, event: ScalarEvent, value: Any, size: int) -> None:
        if event.anchor is not None:
            self.anchors[event.anchor] = (value, size)

    def _child_label(self, mark: Any) -> str:
        if not self.stack:
            return ""
        parent = self.stack[-1]
        if isinstance(parent.value, list):
            return f"{parent.label}[{len(parent.value)}]"
        if not parent.has_key:
            where = f"{shorten(parent.label)}: " if parent.label else ""
            raise self.fail(mark, f"{where}a key is a list or mapping; keys must be plain values")
        return f"{parent.label}.{parent.key}" if parent.label else str(parent.key)

    def _add(self, value: Any, size: int, mark: Any) -> None:
        if not self.stack:
            self.result = value
            return
        parent = self.stack[-1]
        parent.size += size
        if isinstance(parent.value, list):
            parent.value.append(value)
        elif parent.has_key:
            parent.value[parent.key] = value
            parent.has_key = False
        else:
            self._key(parent, value, mark)

    def _key(self, parent: _Frame, key: Any, mark: Any) -> None:
        where = f"{shorten(parent.label)}: " if parent.label else ""
        if isinstance(key, (dict, list)):  # an alias to a collection used as a key
            raise self.fail(mark, f"{where}a key is a list or mapping; keys must be plain values")
        if key in parent.value:
            first = parent.key_marks[key]
            positions = self._positions(first, mark)
            raise _Refused(None, f"{where}the key {excerpt(key)} appears twice ({positions}); keep one")
        parent.key_marks[key] = mark
        parent.key = key
        parent.has_key = True

    @staticmethod
    def _positions(first: Any, second: Any) -> str:
        if first.line != second.line:
            return f"lines {first.line + 1} and {second.line + 1}"
        return f"line {first.line + 1}, columns {first.column + 1} and {second.column + 1}"
