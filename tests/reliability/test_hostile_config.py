"""Hostile configuration (issue 23): every configuration file and ``--set`` value goes through one
loader (``hashbench/harness/safe_yaml.py``) and the parameter schemas bound every number.

Each case must stop before any work: exit code 2, one line on stderr that names the file (or the
``--set`` key) and says what is wrong, quoting at most a short excerpt of the input, and nothing
written under the results folder.
"""

from __future__ import annotations

import copy
import os
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from hashbench.api.params import MAX_EPOCHS
from hashbench.harness.safe_yaml import MAX_ALIAS_NODES, MAX_CONFIG_BYTES, MAX_DEPTH

from .conftest import FAST, assert_clear_error, invoke

#: the longest line a refusal may print: prefix, file name and a 60-character excerpt fit
MAX_LINE = 400


def run_with_registry(registry: Path, results: Path, *extra: str):
    return invoke("run", "--grid", "smoke", "--registry", str(registry), "--results-dir", str(results),
                  "--quiet", "--no-report", *extra)


def run_with_grid_file(grid: Path, results: Path):
    return invoke("run", "--grid", str(grid), "--results-dir", str(results), "--quiet", "--no-report")


def run_with_set(value: str, results: Path):
    return invoke("run", *FAST, "--set", value, "--results-dir", str(results), "--quiet", "--no-report")


def refused(result, results: Path, *needles: str) -> str:
    """Exit 2, one short line containing ``needles``, and no results folder."""
    line = assert_clear_error(result, *needles)
    assert len(line) <= MAX_LINE, line
    assert not results.exists(), line
    return line


def registry_text(project_registry: dict[str, Any], change: Callable[[dict], Any] | None = None) -> str:
    raw = copy.deepcopy(project_registry)
    if change is not None:
        change(raw)
    return yaml.safe_dump(raw, sort_keys=False)  # ASCII: other characters are written as escapes


def line_of(text: str, needle: str, start: int = 0) -> int:
    """1-based number of the first line at or after line ``start`` that is ``needle``."""
    return next(i for i, line in enumerate(text.splitlines(), 1) if i > start and line == needle)


TINY_GRID = "datasets: [shapes-tiny]\nmethods: [dpsh]\nbackbones: [smallcnn]\nbits: [16]\ndefenses: [none]\n"


# -- duplicate keys ----------------------------------------------------------------------------

def test_a_grid_file_with_a_key_twice_names_both_lines(tmp_path: Path) -> None:
    grid = tmp_path / "twice.yaml"
    grid.write_text("datasets: [shapes-tiny]\nmethods: [dpsh]\nbits: [16]\nbackbones: [smallcnn]\n"
                    "defenses: [none]\nbits: [64]\n")
    refused(run_with_grid_file(grid, tmp_path / "results"), tmp_path / "results",
            str(grid), "the key 'bits' appears twice (lines 3 and 6)")


def test_a_registry_defining_a_grid_twice_names_both_lines(tmp_path: Path, project_registry) -> None:
    text = registry_text(project_registry)
    assert text.rstrip().splitlines()[-1].startswith("    ")  # grids is the last section
    text += "  smoke:\n    union: [table1]\n"
    path = tmp_path / "registry.yaml"
    path.write_text(text)
    first = line_of(text, "  smoke:", line_of(text, "grids:"))
    last = len(text.splitlines()) - 1
    refused(run_with_registry(path, tmp_path / "results"), tmp_path / "results",
            str(path), f"grids: the key 'smoke' appears twice (lines {first} and {last})")


def test_a_key_twice_in_a_nested_mapping_names_its_path(tmp_path: Path, project_registry) -> None:
    text = registry_text(project_registry)
    start = line_of(text, "  shapes-tiny:")
    params = line_of(text, "    params:", start)
    lines = text.splitlines()
    lines.insert(params + 1, "      num_items: 9999")  # after the first key under params
    path = tmp_path / "registry.yaml"
    path.write_text("\n".join(lines) + "\n")
    refused(run_with_registry(path, tmp_path / "results"), tmp_path / "results",
            str(path), "datasets.shapes-tiny.params: the key 'num_items' appears twice")


def test_a_key_twice_in_a_set_value(tmp_path: Path) -> None:
    refused(run_with_set("params.attacks.center={iterations: 1, iterations: 2}", tmp_path / "results"),
            tmp_path / "results", "--set params.attacks.center: cannot parse",
            "the key 'iterations' appears twice (line 1, columns 2 and 17)")


# -- tags ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("value", "tag"),
    [("bits=!!binary AAAAAAAAAEA=", "!!binary"),
     ("bits=!!python/object:builtins.int {}", "!!python/object:builtins.int"),
     ("attacks=!!set {center: null}", "!!set"),
     ("description=!!timestamp 2024-01-01", "!!timestamp"),
     ("bits=!!int '16'", "!!int"),
     ("attacks=!custom [center]", "!custom")],
    ids=["binary", "python-object", "set", "timestamp", "int", "custom"],
)
def test_a_tag_in_a_set_value_is_refused(tmp_path: Path, value: str, tag: str) -> None:
    refused(run_with_set(value, tmp_path / "results"), tmp_path / "results",
            f"the tag '{tag}' is not allowed", "plain values, lists and mappings only")


def test_a_tag_in_a_grid_file_is_refused(tmp_path: Path) -> None:
    grid = tmp_path / "tagged.yaml"
    grid.write_text(TINY_GRID.replace("bits: [16]", "bits: !!set {16: null}"))
    refused(run_with_grid_file(grid, tmp_path / "results"), tmp_path / "results",
            f"{grid}:4:7: invalid YAML: the tag '!!set' is not allowed")


def test_a_date_stays_a_string(tmp_path: Path) -> None:
    # a plain date is not turned into a datetime: it is the text written (yaml.safe_load made it a date)
    result = invoke("plan", *FAST, "--set", "description=2024-01-01", "--results-dir", str(tmp_path), "--json")
    assert result.exit_code == 0, result.output


def test_a_merge_key_is_refused(tmp_path: Path) -> None:
    grid = tmp_path / "merged.yaml"
    grid.write_text("base: &base {bits: [16]}\n<<: *base\n" + TINY_GRID.replace("bits: [16]\n", ""))
    refused(run_with_grid_file(grid, tmp_path / "results"), tmp_path / "results",
            f"{grid}:2:1: invalid YAML: merge keys ('<<') are not supported")


# -- bytes and files ------------------------------------------------------------------------------

def test_a_latin1_registry_names_the_byte_offset(tmp_path: Path, project_registry) -> None:
    text = registry_text(project_registry)
    description = "    description: a few hundred shapes images for the smoke grid and tests\n"
    assert description in text
    data = text.replace(description, "    description: café\n").encode("latin-1")
    offset = data.index("é".encode("latin-1"))
    line = data.count(b"\n", 0, offset) + 1
    path = tmp_path / "registry.yaml"
    path.write_bytes(data)
    refused(run_with_registry(path, tmp_path / "results"), tmp_path / "results",
            str(path), f"not UTF-8: byte 0xe9 at byte offset {offset} (line {line})")


def test_a_latin1_grid_file_names_the_byte_offset(tmp_path: Path) -> None:
    grid = tmp_path / "latin.yaml"
    data = ("description: Übersicht\n" + TINY_GRID).encode("latin-1")
    grid.write_bytes(data)
    refused(run_with_grid_file(grid, tmp_path / "results"), tmp_path / "results",
            str(grid), "not UTF-8: byte 0xdc at byte offset 13 (line 1)")


def test_a_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    grid = tmp_path / "bom.yaml"
    grid.write_bytes(b"\xef\xbb\xbf" + TINY_GRID.encode())
    result = invoke("plan", "--grid", str(grid), "--results-dir", str(tmp_path), "--json")
    assert result.exit_code == 0, result.output


def test_dev_zero_as_registry_is_refused_unread(tmp_path: Path) -> None:
    started = time.monotonic()
    refused(run_with_registry(Path("/dev/zero"), tmp_path / "results"), tmp_path / "results",
            "cannot read registry file /dev/zero: it is a character device, not a regular file")
    assert time.monotonic() - started < 10


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
@pytest.mark.parametrize("where", ["registry", "grid-file"])
def test_a_named_pipe_is_refused_without_blocking(tmp_path: Path, where: str) -> None:
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)  # nobody writes: reading it would block for ever
    result = (run_with_registry(fifo, tmp_path / "results") if where == "registry"
              else run_with_grid_file(fifo, tmp_path / "results"))
    kind = "registry file" if where == "registry" else "grid file"
    refused(result, tmp_path / "results", f"cannot read {kind} {fifo}: it is a named pipe (FIFO), not a regular file")


def test_a_folder_as_registry_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "registry.yaml"
    folder.mkdir()
    result = invoke("run", "--grid", "smoke", "--results-dir", str(tmp_path / "results"), "--quiet",
                    env={"HASHBENCH_REGISTRY": str(folder)})
    refused(result, tmp_path / "results", f"cannot read registry file {folder}: it is a folder, not a regular file")


def test_a_folder_as_grid_file_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "grid.yaml"
    folder.mkdir()
    refused(run_with_grid_file(folder, tmp_path / "results"), tmp_path / "results",
            f"cannot read grid file {folder}: it is a folder, not a regular file")


def test_an_oversize_registry_is_refused_unparsed(tmp_path: Path, project_registry) -> None:
    path = tmp_path / "registry.yaml"
    padding = "# padding\n" * (MAX_CONFIG_BYTES // 10 + 1)
    path.write_text(registry_text(project_registry) + padding)
    refused(run_with_registry(path, tmp_path / "results"), tmp_path / "results",
            f"cannot read registry file {path}: it has", "more than the 1 MiB a configuration file may have")


def test_a_control_character_is_one_line(tmp_path: Path) -> None:
    grid = tmp_path / "nul.yaml"
    grid.write_text("description: a\x00b\n" + TINY_GRID)
    refused(run_with_grid_file(grid, tmp_path / "results"), tmp_path / "results",
            f"{grid}:1:15: invalid YAML: the character U+0000 is not allowed")


# -- alias bombs and deep nesting ----------------------------------------------------------------

def laughs(levels: int = 9) -> list[str]:
    """A "billion laughs": each of ``levels`` anchors lists the previous one 9 times (9**levels values)."""
    lines = ["&l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"&l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return lines


def bomb_in_description() -> str:
    return "[" + ", ".join(laughs()) + "]"


@pytest.mark.parametrize("where", ["registry", "grid-file", "set"])
def test_an_alias_bomb_is_refused_quickly_and_not_echoed(tmp_path: Path, project_registry, where: str) -> None:
    results = tmp_path / "results"
    started = time.monotonic()
    if where == "registry":
        path = tmp_path / "registry.yaml"
        text = registry_text(project_registry)
        description = "    description: a few hundred shapes images for the smoke grid and tests\n"
        assert description in text
        text = text.replace(description, f"    description: {bomb_in_description()}\n", 1)
        path.write_text(text)
        result, needle = run_with_registry(path, results), str(path)
    elif where == "grid-file":
        path = tmp_path / "bomb.yaml"
        path.write_text(f"description: {bomb_in_description()}\n" + TINY_GRID)
        result, needle = run_with_grid_file(path, results), str(path)
    else:
        result, needle = run_with_set(f"description={bomb_in_description()}", results), "--set description"
    refused(result, results, needle, f"the aliases expand to more than {MAX_ALIAS_NODES} values")
    assert time.monotonic() - started < 10


def test_a_few_small_aliases_are_fine(tmp_path: Path) -> None:
    grid = tmp_path / "aliases.yaml"
    grid.write_text("datasets: &d [shapes-tiny]\nmethods: [dpsh]\nbackbones: [smallcnn]\nbits: &b [16]\n"
                    "defenses: [none]\nseeds: [0]\n")
    result = invoke("plan", "--grid", str(grid), "--results-dir", str(tmp_path), "--json")
    assert result.exit_code == 0, result.output


DEEP = 30_000


@pytest.mark.parametrize("shape", ["flow", "block"])
def test_a_deeply_nested_registry_is_one_line(tmp_path: Path, shape: str) -> None:
    path = tmp_path / "registry.yaml"
    if shape == "flow":
        path.write_text("datasets: " + "[" * DEEP + "]" * DEEP + "\nprofiles: {}\ngrids: {}\n")
    else:  # indentation grows by one space a level: the file stays under 1 MiB with a thousand levels
        path.write_text("datasets:\n" + "".join(" " * (i + 1) + f"k{i}:\n" for i in range(1000)))
    refused(run_with_registry(path, tmp_path / "results"), tmp_path / "results",
            str(path), f"invalid YAML: nested more than {MAX_DEPTH} levels deep")


def test_a_deeply_nested_grid_file_is_one_line(tmp_path: Path) -> None:
    grid = tmp_path / "deep.yaml"
    grid.write_text(TINY_GRID + "params: " + "{a: " * DEEP + "1" + "}" * DEEP + "\n")
    refused(run_with_grid_file(grid, tmp_path / "results"), tmp_path / "results",
            str(grid), f"invalid YAML: nested more than {MAX_DEPTH} levels deep")


def test_a_deeply_nested_set_value_is_one_line(tmp_path: Path) -> None:
    refused(run_with_set("bits=" + "[" * DEEP + "16" + "]" * DEEP, tmp_path / "results"), tmp_path / "results",
            "--set bits: cannot parse '[[[", f"nested more than {MAX_DEPTH} levels deep")


# -- numbers out of range ---------------------------------------------------------------------------

def smoke(raw: dict) -> dict:
    return raw["grids"]["smoke"]


def plugin(kind: str, name: str, **values: Any) -> Callable[[dict], None]:
    def change(raw: dict) -> None:
        smoke(raw).setdefault("params", {}).setdefault(kind, {})[name] = values
        smoke(raw)[kind] = [name] if kind != "defenses" else ["none", name]

    return change


# (case id, change to the project's registry.yaml, substrings of the one-line message)
NUMBERS: list[tuple[str, Callable[[dict], Any], tuple[str, ...]]] = [
    ("epsilon-inf", plugin("attacks", "center", epsilon=float("inf")),
     ("attack 'center': 'epsilon': Input should be a finite number (got inf)",)),
    ("epsilon-nan", plugin("attacks", "center", epsilon=float("nan")), ("'epsilon': Input should be a finite number",)),
    ("hag-lr-inf", plugin("attacks", "hag", lr=float("inf")),
     ("attack 'hag': 'lr': Input should be a finite number",)),
    ("betas-nan", plugin("attacks", "sdha", betas=[0.9, float("nan")]),
     ("'betas.1': Input should be a finite number",)),
    ("epochs-huge", plugin("methods", "dpsh", epochs=10**9),
     (f"method 'dpsh': 'epochs': Input should be less than or equal to {MAX_EPOCHS}",)),
    ("iterations-2-63", plugin("attacks", "center", iterations=2**63), ("'iterations': Input should be less than",)),
    ("hidden-width-huge", plugin("attacks", "tha", proto_hidden=[100_000, 512]),
     ("'proto_hidden'", "hidden widths must be at most 65536")),
    ("shapes-items-1e9", lambda r: r["datasets"]["shapes-tiny"]["params"].update(num_items=10**9),
     ("datasets.shapes-tiny.params: 'num_items': Input should be less than or equal to 1000000",)),
    ("shapes-items-1e30", lambda r: r["datasets"]["shapes-tiny"]["params"].update(num_items=1e30),
     ("datasets.shapes-tiny.params: 'num_items'",)),
    ("shapes-memory", lambda r: r["datasets"]["shapes-tiny"]["params"].update(num_items=1_000_000, image_size=256),
     ("'image_size'", "GiB of memory")),
    ("declared-items-1e9", lambda r: r["datasets"]["shapes-tiny"].update(num_items=10**9),
     ("datasets.shapes-tiny.num_items: Input should be less than or equal to 10000000",)),
    ("bits-2-63", lambda r: smoke(r).update(bits=[2**63]), ("grids.smoke.bits: bit lengths must be at most 1024",)),
    ("seed-2-63", lambda r: smoke(r).update(seeds=[2**63]), ("grids.smoke.seeds: seeds must be integers from 0",)),
    ("scale-inf", lambda r: r["profiles"]["smoke"].update(scale={"epochs": float("inf")}),
     ("profiles.smoke.scale.epochs: Input should be a finite number",)),
]


@pytest.mark.parametrize(("change", "needles"), [c[1:] for c in NUMBERS], ids=[c[0] for c in NUMBERS])
def test_a_number_out_of_range_stops_before_any_work(write_registry, tmp_path: Path, change, needles) -> None:
    registry = write_registry(change)
    refused(run_with_registry(registry, tmp_path / "results"), tmp_path / "results", str(registry), *needles)


@pytest.mark.parametrize(
    ("value", "needle"),
    [("params.attacks.center.epsilon=.inf", "'epsilon': Input should be a finite number (got inf)"),
     ("bits=9223372036854775808", "--set bits: Value error, bit lengths must be at most 1024"),
     ("params.datasets.shapes-tiny.num_items=1000000000", "'num_items': Input should be less than or equal to 1000000"),
     ("params.methods.dpsh.epochs=1.0e+30", "'epochs'")],
    ids=["epsilon-inf", "bits-2-63", "num-items-1e9", "epochs-1e30"],
)
def test_a_number_out_of_range_in_a_set_value(tmp_path: Path, value: str, needle: str) -> None:
    refused(run_with_set(value, tmp_path / "results"), tmp_path / "results", needle)


# -- long input is quoted, not echoed -----------------------------------------------------------------

def test_a_long_bad_value_is_quoted_as_an_excerpt(write_registry, tmp_path: Path) -> None:
    registry = write_registry(lambda r: smoke(r).update(bits=["x" * 100_000]))
    line = refused(run_with_registry(registry, tmp_path / "results"), tmp_path / "results",
                   "grids.smoke.bits.0: Input should be a valid integer", "xxx…")
    assert "x" * 100 not in line


def test_a_long_unknown_name_is_quoted_as_an_excerpt(tmp_path: Path) -> None:
    line = refused(run_with_set("methods=[" + "d" * 100_000 + "]", tmp_path / "results"), tmp_path / "results",
                   "unknown method 'ddd", "…'")
    assert "d" * 100 not in line
