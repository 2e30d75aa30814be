"""Hostile names, paths and strings: a run name is a name, paths never come from data, and user,
data and plugin strings are shown as text.

- A run name (``--run``, or a grid file's stem) follows the name rule of datasets, grids and
  plugins; anything else stops the command before any work, and other folders stay byte for
  byte as they were.
- A results folder that is a file, under a file, too long a name or read-only is refused before
  any work, with what is actually wrong; a complete, fully cached run on a read-only folder
  writes nothing.
- ``run.json`` and records never choose a path; bad record files are named, skipped by
  ``report`` and refused by ``compare``.
- Terminal output escapes Rich markup and control characters; CSV cells are never formulas.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import Result
from report_records import add_examples, make_record, write_run
from rich.console import Console

from hashbench import plugins
from hashbench.errors import UserError
from hashbench.harness.store import ArtifactStore
from hashbench.progress import RichReporter
from hashbench.report import render_html, write_report

from .conftest import FAST, assert_clear_error, invoke

ROOT = Path(__file__).resolve().parents[2]
#: the FAST grid as a grid file (the run is named after the file's stem)
GRID_FILE = {"profile": "smoke", "datasets": ["shapes-tiny"], "methods": ["dpsh"], "backbones": ["smallcnn"],
             "bits": [16], "defenses": ["none"], "attacks": ["center"], "seeds": [0],
             "params": {"backbones": {"smallcnn": {"width": 8, "features": 64}}}}


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _someone_elses_run(folder: Path) -> Path:
    """A finished run's files (a manifest, a record, a report page) that must never change."""
    (folder / "records").mkdir(parents=True)
    (folder / "run.json").write_text('{"run": "theirs", "status": "complete"}')
    (folder / "records" / "their-cell.json").write_text('{"schema_version": 1, "status": "ok"}')
    (folder / "index.html").write_text("<p>their report</p>")
    return folder


# -- run names -------------------------------------------------------------------------------------

def test_a_run_name_that_is_a_path_cannot_touch_another_projects_run(tmp_path: Path) -> None:
    results = tmp_path / "project" / "results"
    theirs = _someone_elses_run(tmp_path / "project" / "other_project" / "results" / "smoke")
    before = _snapshot(tmp_path)
    result = invoke("run", *FAST, "--run", "../other_project/results/smoke", "--results-dir", str(results),
                    "--quiet", "--no-report")
    assert_clear_error(result, "--run: the name '../other_project/results/smoke' is not allowed", "never a path")
    assert _snapshot(tmp_path) == before  # their records, manifest and report byte for byte
    assert not results.exists() and theirs.is_dir()


@pytest.mark.parametrize("file_name", ["..yaml", "...yaml"])
def test_a_grid_file_named_dots_cannot_leave_the_results_folder(tmp_path: Path, file_name: str) -> None:
    project = _someone_elses_run(tmp_path / "project")  # the folder above the results folder
    results = project / "results"
    _someone_elses_run(results)  # and the results folder itself: neither is a run folder of this grid
    grid = tmp_path / "grids" / file_name
    grid.parent.mkdir()
    grid.write_text(yaml.safe_dump(GRID_FILE))
    before = _snapshot(tmp_path)
    result = invoke("run", "--grid", str(grid), "--results-dir", str(results), "--quiet", "--no-report")
    assert_clear_error(result, f"--grid {grid}: the run is named after the file's stem",
                       f"the name '{file_name[:-5]}' is not allowed", "pass --run NAME")
    assert _snapshot(tmp_path) == before


def test_a_grid_file_whose_stem_is_not_a_name_needs_run(tmp_path: Path) -> None:
    grid = tmp_path / "grïd <b>.yaml"
    grid.write_text(yaml.safe_dump(GRID_FILE))
    results = tmp_path / "results"
    result = invoke("run", "--grid", str(grid), "--results-dir", str(results), "--dry-run")
    assert_clear_error(result, "the name 'grïd <b>' is not allowed", "pass --run NAME, or name the file differently")
    assert not results.exists()
    # with --run the run has a name, and the file's stem is only the grid's label
    named = invoke("run", "--grid", str(grid), "--run", "grid-b", "--results-dir", str(results), "--dry-run")
    assert named.exit_code == 0, named.output


@pytest.mark.parametrize(
    ("name", "shown"),
    [("/absolute/path", "'/absolute/path'"), ("a/b", "'a/b'"), (".", "'.'"), ("..", "'..'"), ("", "''"),
     ("-rf", "'-rf'"), ("x[/]", "'x[/]'"), ("a\x00b", "'a\\x00b'"), ("a\x1b[2Jb", "'a\\x1b[2Jb'"),
     ("x" * 65, "'xxxxxxxxxx"), ("x" * 300, "'xxxxxxxxxx")],
    ids=["absolute", "nested", "dot", "dotdot", "empty", "option-like", "markup", "nul", "ansi", "65-chars",
         "300-chars"],
)
def test_a_run_name_is_a_name(tmp_path: Path, name: str, shown: str) -> None:
    results = tmp_path / "results"
    name = name.replace("/absolute", str(tmp_path / "absolute"))
    shown = shown.replace("/absolute", str(tmp_path / "absolute"))
    result = invoke("run", *FAST, "--run", name, "--results-dir", str(results), "--quiet", "--no-report")
    line = assert_clear_error(result, f"--run: the name {shown[:50]}", "is not allowed", "1–64 letters, digits")
    if len(name) > 64:
        assert f"(this one has {len(name)})" in line
    assert len(line) < 400 and "\x1b" not in line and "\x00" not in line
    assert not results.exists() and not (tmp_path / "absolute").exists()


def test_the_runner_itself_refuses_a_path_as_run_name(tmp_path: Path, config) -> None:
    from hashbench.harness.plan import build_plan
    from hashbench.harness.runner import Runner

    theirs = _someone_elses_run(tmp_path / "theirs")
    before = _snapshot(theirs)
    plan = build_plan(config, "smoke", config.grid("smoke"))
    with pytest.raises(UserError, match="is not allowed"):
        Runner(tmp_path / "results", "cpu").run(plan, "../theirs")
    assert _snapshot(theirs) == before and not (tmp_path / "results").exists()


# -- results folders -------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["run", "plan"])
def test_a_results_folder_that_is_a_file_is_refused_before_any_work(tmp_path: Path, command: str) -> None:
    file = tmp_path / "results"
    file.write_text("not a folder\n")
    result = invoke(command, *FAST, *(["--quiet", "--no-report"] if command == "run" else []),
                    env={"HASHBENCH_RESULTS": str(file)})
    assert_clear_error(result, f"results folder {file} is a file, not a folder", "$HASHBENCH_RESULTS")
    assert file.read_text() == "not a folder\n"


@pytest.mark.parametrize("command", ["run", "plan"])
@pytest.mark.parametrize(
    ("where", "needle"),
    [("under-a-file", "a part of the path is a file, not a folder"),
     ("name-too-long", "a file name in the path is too long for the filesystem")],
)
def test_a_results_folder_that_cannot_exist_says_why(tmp_path: Path, command: str, where: str, needle: str) -> None:
    (tmp_path / "file").write_text("x")
    results = tmp_path / "file" / "results" if where == "under-a-file" else tmp_path / ("r" * 300) / "results"
    result = invoke(command, *FAST, "--results-dir", str(results), *(["--quiet"] if command == "run" else []))
    line = assert_clear_error(result, f"results folder {results}: {needle}", "nothing was run")
    assert "free space" not in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_a_record_file_name_too_long_for_the_filesystem_is_refused_before_any_work(
        write_registry, tmp_path: Path) -> None:
    long = "x" * 64  # a valid name; four of them make a cell id longer than a file name may be
    plugins.methods.register(f"m{long[1:]}", plugins.methods.get("dpsh"))
    plugins.attacks.register(f"a{long[1:]}", plugins.attacks.get("center"))
    plugins.defenses.register(f"d{long[1:]}", plugins.defenses.get("none"))

    def change(raw: dict) -> None:
        raw["datasets"][long] = raw["datasets"]["shapes-tiny"]
        raw["grids"]["smoke"].update(datasets=[long], methods=[f"m{long[1:]}"], defenses=[f"d{long[1:]}"],
                                     attacks=[f"a{long[1:]}"])
        raw["grids"]["smoke"]["params"] = {"backbones": raw["grids"]["smoke"]["params"]["backbones"]}

    try:
        registry = write_registry(change)
        results = tmp_path / "results"
        result = invoke("run", "--grid", "smoke", "--registry", str(registry), "--results-dir", str(results),
                        "--quiet", "--no-report")
    finally:
        plugins.methods.unregister(f"m{long[1:]}")
        plugins.attacks.unregister(f"a{long[1:]}")
        plugins.defenses.unregister(f"d{long[1:]}")
    line = assert_clear_error(result, "record file name would exceed this filesystem's file-name limit",
                              "use shorter dataset and plugin names")
    assert "free space" not in line and not results.exists()


def _read_only_mount_works() -> bool:
    if os.geteuid() != 0:
        return True  # permissions make a folder read-only for everyone but root
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                            'mount --bind -o ro /tmp /tmp && ! touch /tmp/.hashbench-ro-probe'],
                           capture_output=True)
    return probe.returncode == 0


def run_on_read_only(folder: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``hashbench ARGS`` in a subprocess that sees ``folder`` read-only: a private read-only bind
    mount for root (it ends with the process), the folder's permissions otherwise."""
    if not _read_only_mount_works():
        pytest.skip("cannot make a folder read-only here (root without mount namespaces)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "hashbench.cli.main", *args]
    if os.geteuid() == 0:
        command = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                   'mount --bind -o ro "$0" "$0" && exec "$@"', str(folder), *command]
        return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env, timeout=300)
    modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")]}
    for path in modes:
        path.chmod(modes[path] & ~0o222)
    try:
        return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env, timeout=300)
    finally:
        for path, mode in modes.items():
            path.chmod(mode)


def test_a_read_only_results_folder_is_refused_before_any_work(tmp_path: Path, finished: Path) -> None:
    results = tmp_path / "results"
    shutil.copytree(finished, results)
    before = _snapshot(results)
    # another seed: stages to run, and nowhere to store them
    done = run_on_read_only(results, "run", *FAST, "--set", "seeds=[1]", "--results-dir", str(results), "--quiet",
                            cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hashbench: error: "), done.stderr
    assert f"{results} is read-only" in lines[0] and "nothing was run" in lines[0], lines[0]
    assert "free space" not in lines[0]
    assert _snapshot(results) == before


def test_a_complete_cached_run_on_a_read_only_folder_writes_nothing(tmp_path: Path, finished: Path) -> None:
    results = tmp_path / "results"
    shutil.copytree(finished, results)
    before = _snapshot(results)
    done = run_on_read_only(results, "run", *FAST, "--results-dir", str(results), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    stderr = " ".join(done.stderr.split())  # Rich wraps long lines
    assert f"{results} is read-only (Read-only file system)" in stderr or f"{results} is read-only (Permission" in stderr
    assert "run smoke is complete and every cell is cached: nothing written" in stderr
    assert "2 cells, 0 stages executed, 2 cached" in stderr
    assert (tmp_path / "reports" / "smoke" / "index.html").is_file()  # the report is written elsewhere
    assert _snapshot(results) == before


# -- paths from data -------------------------------------------------------------------------------

@pytest.mark.parametrize("claimed", ["absolute", "../../victim", ".."])
def test_run_json_cannot_choose_where_the_report_goes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      claimed: str) -> None:
    victim = _someone_elses_run(tmp_path / "victim")
    results, cwd = tmp_path / "results", tmp_path / "work"
    cwd.mkdir()
    write_run(results, [make_record(run="received")], run="received",
              manifest={"run": str(victim) if claimed == "absolute" else claimed, "status": "complete"})
    before = _snapshot(victim)
    monkeypatch.chdir(cwd)
    result = invoke("report", "--run", "received", "--results-dir", str(results))
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(Path("reports") / "received" / "index.html")
    assert (cwd / "reports" / "received" / "index.html").is_file()
    assert _snapshot(victim) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results", "victim", "work"]


def test_artifact_keys_from_records_never_leave_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    results = tmp_path / "results"
    records = [make_record(run="a", attack=a, cell_id=f"cell-{a}") for a in ("clean", "dhta")]
    add_examples(results, records)  # example rankings, and their artifacts in the store
    for record in records:
        record["provenance"]["artifact_keys"] = {"evaluate": "../../../../outside", "attack": str(tmp_path)}
    write_run(results, records, run="a")
    asked: list[str] = []
    real_load = ArtifactStore.load
    monkeypatch.setattr(ArtifactStore, "load", lambda self, stage, key: asked.append(key) or real_load(self, stage, key))
    render_html("a", results_dir=results)
    assert asked == []


@pytest.mark.parametrize("command", ["report", "compare"])
def test_a_run_that_is_a_path_but_not_a_run_folder_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               command: str) -> None:
    results = tmp_path / "project" / "results"
    write_run(results, [make_record(run="a")], run="a")
    write_run(tmp_path / "project", [make_record(run="x")], run="x")  # results/../x: beside the results folder
    monkeypatch.chdir(tmp_path)  # where ../x is nothing
    args = ["--run", "../x"] if command == "report" else ["a", "../x"]
    result = invoke(command, *args, "--results-dir", str(results), *(["--out", "out"] if command == "report" else []))
    assert_clear_error(result, "--run: the name '../x' is not allowed", "never a path",
                       "or give the path of a run folder")
    assert not (tmp_path / "out").exists()


def test_a_run_folder_given_as_a_path_needs_out_when_its_name_is_not_a_name(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write_run(tmp_path, [make_record(run="x")], run="a b")
    monkeypatch.chdir(tmp_path)
    assert_clear_error(invoke("report", "--run", str(folder)), f"run folder {folder}: the name 'a b' is not allowed",
                       "pass --out")
    assert not (tmp_path / "reports").exists()
    out = tmp_path / "out"
    result = invoke("report", "--run", str(folder), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert (out / "index.html").is_file()


def test_out_that_is_a_file_is_refused(tmp_path: Path) -> None:
    write_run(tmp_path / "results", [make_record()], run="a")
    out = tmp_path / "out"
    out.write_text("mine\n")
    result = invoke("report", "--run", "a", "--out", str(out), "--results-dir", str(tmp_path / "results"))
    assert result.exit_code == 2 and f"Directory '{out}' is a file" in result.output  # click's own check
    assert out.read_text() == "mine\n"
    with pytest.raises(UserError, match="a file is in the way"):  # and the library's
        write_report("a", results_dir=tmp_path / "results", out_dir=out)
    assert out.read_text() == "mine\n"


# -- bad record files ------------------------------------------------------------------------------

BAD_RECORDS = {
    "truncated": b'{"schema_version": 1, "status": "ok", "metr',
    "empty": b"",
    "a-list": b"[1, 2, 3]",
    "a-string": b'"record"',
    "not-utf8": b'{"run": "\xff\xfe"}',
    "missing-fields": b'{"schema_version": 1, "status": "ok", "metrics": {"map": 0.5}}',
    "wrong-types": json.dumps(make_record(cell_id="typed") | {"cell": {**make_record()["cell"], "bits": "16"}}).encode(),
}
BAD_NEEDLES = {"truncated": "the record is not valid JSON", "empty": "the record is not valid JSON",
               "a-list": "the record holds a JSON list, not an object",
               "a-string": "the record holds a JSON str, not an object", "not-utf8": "the record is not UTF-8",
               "missing-fields": "not a complete record", "wrong-types": "not a complete record (bits is '16')"}


def _run_with_a_bad_record(results: Path, case: str) -> Path:
    folder = write_run(results, [make_record(run="a", attack=a, cell_id=f"ok-{a}") for a in ("clean", "center")],
                       run="a")
    bad = folder / "records" / "zz-bad.json"
    bad.write_bytes(BAD_RECORDS[case])
    return bad


@pytest.mark.parametrize("case", list(BAD_RECORDS))
def test_report_skips_a_bad_record_and_says_so(tmp_path: Path, case: str) -> None:
    bad = _run_with_a_bad_record(tmp_path / "results", case)
    out = tmp_path / "out"
    result = invoke("report", "--run", "a", "--csv", "--out", str(out), "--results-dir", str(tmp_path / "results"))
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("hashbench: warning: ")]
    assert len(warnings) == 1, result.output
    assert f"{bad}: {BAD_NEEDLES[case]}" in warnings[0] and warnings[0].endswith("; skipped"), warnings[0]
    rows = list(csv.DictReader(io.StringIO((out / "results.csv").read_text())))
    assert sorted(r["cell_id"] for r in rows) == ["ok-center", "ok-clean"]


@pytest.mark.parametrize("case", list(BAD_RECORDS))
def test_compare_refuses_a_bad_record(tmp_path: Path, case: str) -> None:
    results = tmp_path / "results"
    bad = _run_with_a_bad_record(results, case)
    write_run(results, [make_record(run="b")], run="b")
    assert_clear_error(invoke("compare", "a", "b", "--results-dir", str(results)), f"{bad}: {BAD_NEEDLES[case]}")


@pytest.mark.parametrize(("text", "needle"), [('{"run": "a", "stat', "is not valid JSON"),
                                              ('["a"]', "holds a JSON list, not an object")],
                         ids=["truncated", "a-list"])
@pytest.mark.parametrize("command", ["report", "compare"])
def test_a_run_json_that_is_not_a_json_object_is_named(tmp_path: Path, command: str, text: str, needle: str) -> None:
    results = tmp_path / "results"
    folder = write_run(results, [make_record(run="a")], run="a")
    (folder / "run.json").write_text(text)
    write_run(results, [make_record(run="b")], run="b")
    args = ["--run", "a", "--out", str(tmp_path / "out")] if command == "report" else ["a", "b"]
    assert_clear_error(invoke(command, *args, "--results-dir", str(results)),
                       f"{folder / 'run.json'}: the run manifest {needle}")
    assert not (tmp_path / "out").exists()


# -- CSV cells are never formulas ------------------------------------------------------------------

def test_csv_cells_that_a_spreadsheet_would_run_are_text(tmp_path: Path) -> None:
    hostile = ["=HYPERLINK(1)", "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"]
    records = [make_record(run=h, method=h, cell_id=f"cell-{i}", map_=0.25) for i, h in enumerate(hostile)]
    records[0]["perturbation"]["l2_mean"] = -1.5  # a negative number stays a number
    failed = make_record(run="=x", cell_id="failed-cell")
    failed.update(status="failed", error="=cmd|' /C calc'!A0")
    del failed["metrics"]
    write_run(tmp_path / "results", [*records, failed], run="a")
    out = tmp_path / "out"
    assert invoke("report", "--run", "a", "--csv", "--out", str(out), "--results-dir",
                  str(tmp_path / "results")).exit_code == 0
    rows = list(csv.DictReader(io.StringIO((out / "results.csv").read_text(), newline="")))
    cells = [value for row in rows for value in row.values() if value]
    assert not [v for v in cells if v[0] in "=+@\t\r" or (v[0] == "-" and not _is_number(v))]
    by_id = {r["cell_id"]: r for r in rows}
    assert by_id["cell-0"]["method"] == "'=HYPERLINK(1)" and by_id["cell-2"]["run"] == "'-2+3"
    assert by_id["cell-0"]["l2_mean"] == "-1.5" and by_id["cell-0"]["map"] == "0.25"
    assert by_id["failed-cell"]["error"] == "'=cmd|' /C calc'!A0"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# -- terminal output -------------------------------------------------------------------------------

HOSTILE_TEXT = "[blink]blinks[/blink] \x1b]0;pwned\x07\x1b[2Jcleared \u202etxt.exe"


def _no_control(output: str) -> None:
    for ch in ("\x1b", "\x07", "\u202e"):
        assert ch not in output, repr(output[max(0, output.find(ch) - 60):output.find(ch) + 60])


def test_list_shows_plugin_strings_as_text(monkeypatch: pytest.MonkeyPatch) -> None:
    center = plugins.attacks.get("center")

    class Hostile(center):
        description = HOSTILE_TEXT
        paper = "[red]paper[/red] \x1b[31m"

    plugins.attacks.register("hostile-text", Hostile, distribution="[bold]dist\x1b[2J", version="1\x1b[0m")
    try:
        result = invoke("list", "attacks", env={"COLUMNS": "400"})
    finally:
        plugins.attacks.unregister("hostile-text")
    assert result.exit_code == 0, result.output
    _no_control(result.output)
    for shown in ("[blink]blinks[/blink]", "\\x1b]0;pwned\\x07\\x1b[2Jcleared", "\\u202etxt.exe",
                  "[red]paper[/red] \\x1b[31m", "[bold]dist\\x1b[2J 1\\x1b[0m"):
        assert shown in result.output, (shown, result.output)


def test_error_messages_show_control_characters_escaped(tmp_path: Path) -> None:
    result = invoke("plan", "--grid", "x\x1b[2J\x1b]0;pwned\x07", "--results-dir", str(tmp_path))
    line = assert_clear_error(result, "unknown grid 'x\\x1b[2J\\x1b]0;pwned\\x07'")
    _no_control(line)


def test_progress_shows_names_and_messages_as_text() -> None:
    buffer = io.StringIO()
    reporter = RichReporter(Console(file=buffer, force_terminal=True, width=200, color_system=None))
    with reporter.task("run x[/]", 1) as advance:  # Rich would read "[/]" as a closing tag
        reporter.log(f"FAILED attack: {HOSTILE_TEXT}")
        advance(1)
        reporter.progress.refresh()  # draw the bar with its description now
    reporter.close()
    output = buffer.getvalue()
    assert "run x[/]" in output
    assert "[blink]blinks[/blink] \\x1b]0;pwned\\x07\\x1b[2Jcleared \\u202etxt.exe" in output
    assert "\x07" not in output and "\u202e" not in output and "\x1b]0;" not in output and "\x1b[2J" not in output


def test_paths_and_names_in_run_output_are_text(tmp_path: Path, finished: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    results = tmp_path / "res[" / "]x"  # "…/res[/]x/smoke" holds Rich's closing tag "[/]"
    shutil.copytree(finished, results)
    monkeypatch.chdir(tmp_path)
    result: Result = invoke("run", *FAST, "--results-dir", str(results), "--quiet")
    assert result.exit_code == 0, (result.output, result.exception)
    assert f"results in {results / 'smoke'}" in result.output
    assert f"report: {Path('reports') / 'smoke' / 'index.html'}" in result.output
