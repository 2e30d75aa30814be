"""The ``hashbench`` command line: run, plan, report, list, compare."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any, Callable

import click
from rich.console import Console
from rich.table import Table

from hashbench.api.registry import PLUGIN_KINDS
from hashbench.errors import ArtifactError, HashbenchError, UserError
from hashbench.harness.devices import DEVICES
from hashbench.results import RESULTS_ENV, default_results_dir
from hashbench.terminal import markup, plain

#: what ``hashbench list`` lists, in its order: the plugin kinds, then the grids and profiles of registry.yaml
KINDS = (*PLUGIN_KINDS, "grids", "profiles")


def _user_errors(fn: Callable) -> Callable:
    """Turn hashbench's own errors into one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (UserError, ArtifactError) as exc:
            click.echo(f"hashbench: error: {plain(exc, one_line=True)}", err=True)
            sys.exit(2)
        except HashbenchError as exc:
            click.echo(f"hashbench: failed: {plain(exc, one_line=True)}", err=True)
            sys.exit(1)

    return wrapper


def _stops_on_signals(fn: Callable) -> Callable:
    """SIGTERM and SIGHUP stop the command as Ctrl-C does: one line on stderr, exit code 128 + the signal."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from hashbench.harness.interrupts import exit_status, interrupt_on_signals, signal_of

        try:
            with interrupt_on_signals():
                return fn(*args, **kwargs)
        except KeyboardInterrupt as exc:
            click.echo(f"hashbench: interrupted by {signal_of(exc).name}; finished stages are kept: "
                       "run the same command again to resume", err=True)
            sys.exit(exit_status(exc))

    return wrapper


def _results_dir(value: str | None) -> Path:
    return Path(value) if value else default_results_dir()


results_option = click.option("--results-dir", type=click.Path(file_okay=False), default=None,
                              help=f"Where runs and the artifact store live (default: ./results or ${RESULTS_ENV}).")
registry_option = click.option("--registry", "registry_path", type=click.Path(dir_okay=False), default=None,
                               help="registry.yaml to read (default: the project's, or $HASHBENCH_REGISTRY).")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hashbench")
def main() -> None:
    """hashbench: how robust is a deep-hashing model, under every attack, with every defense?

    \b
    Exit codes: 0 success; 1 some cells failed (run), a difference above
    --threshold (compare) or a problem found (doctor); 2 a mistake in the input
    (unknown name, bad value, malformed file), reported before any work.
    """


@main.group()
def data() -> None:
    """Prepare the real datasets: ``data build NAME --from DIR`` writes the list files a grid reads."""


from hashbench.cli.data import build as _data_build  # noqa: E402  (after main: it is added to `data`)

_data_build.callback = _user_errors(_data_build.callback)
data.add_command(_data_build)


def _plan(registry_path: str | None, grid: str, profile: str | None, overrides: tuple[str, ...] = (),
          pretrained: str | None = None, amp: str | None = None, amp_attacks: bool = False,
          require_data: bool = True):
    """Load the registry, resolve ``--grid`` (a name or a YAML file), apply ``--set`` and plan."""
    from hashbench.harness.config import apply_overrides, is_grid_path, load_config, load_grid_file
    from hashbench.harness.plan import PlanOptions, plan_members

    config = load_config(registry_path)
    if is_grid_path(grid):
        name, spec = load_grid_file(grid, config)
        sources = {name: str(grid)}
    else:
        name, spec = grid, config.grid(grid)
        sources = {}
    members = config.members(name, spec)
    if pretrained is not None:
        members = _with_pretrained(members, pretrained)
    if overrides:
        members = apply_overrides(config, members, list(overrides))
        sources = {m: f"{sources.get(m) or f'{config.path}: grids.{m}'} (with --set)" for m, _ in members}
    options = PlanOptions(amp=amp, amp_attacks=amp_attacks)
    return plan_members(config, name, members, profile, options=options, require_data=require_data, sources=sources)


def _with_pretrained(members: list, pretrained: str) -> list:
    """``members`` (name, grid) with every backbone that has ImageNet weights set to ``pretrained``."""
    from hashbench import plugins
    from hashbench.harness.config import set_plugin_params

    names = dict.fromkeys(name for _, grid in members for name in grid.backbones)  # first-seen order
    for name in names:
        if "pretrained" in plugins.backbones.get(name).Params.model_fields:
            members = set_plugin_params(members, "backbones", name, {"pretrained": pretrained}, "--pretrained")
    return members


grid_option = click.option("--grid", default="demo", show_default=True,
                           help="Grid of registry.yaml, or a YAML file defining one grid.")
set_option = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                          help="Override a grid axis or parameter, e.g. attacks=[hag,sdha], bits=32, "
                               "params.attacks.center.iterations=5 (repeatable).")
amp_option = click.option("--amp", type=click.Choice(["bf16", "fp16"]), default=None,
                          help="Mixed precision for training stages (train, defend); part of their cache keys.")
amp_attacks_option = click.option("--amp-attacks", is_flag=True,
                                  help="With --amp: also autocast the attack stages (they stay fp32 otherwise).")


@main.command()
@grid_option
@click.option("--profile", default=None, help="Profile (default: the grid's own).")
@set_option
@click.option("--run", "run_name", default=None, help="Run name (default: the grid's name).")
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--pretrained", default=None,
              help="Override every backbone's ImageNet weights: 'imagenet', 'none' or a state_dict file.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="Local processes running independent stages (each with cores/N torch threads).")
@click.option("--threads", default=None, type=click.IntRange(min=1),
              help="Torch threads per process running stages (default: all cores with one worker, cores/N with "
                   "N).  Equal --threads give bit-identical records whatever --workers is.")
@click.option("--executor", default="local", show_default=True, type=click.Choice(["local", "ray"]),
              help="Run stages here, or as Ray tasks (needs the 'ray' extra and a shared filesystem).")
@click.option("--address", default=None, help="Ray cluster address (default: start a local Ray instance).")
@amp_option
@amp_attacks_option
@click.option("--channels-last", is_flag=True, help="Channels-last memory format for the networks (speed only).")
@click.option("--dry-run", is_flag=True, help="Show the plan and stop.")
@click.option("--no-report", is_flag=True, help="Do not write the HTML report at the end.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@results_option
@registry_option
@_user_errors
@_stops_on_signals
def run(grid: str, profile: str | None, overrides: tuple[str, ...], run_name: str | None, device: str,
        pretrained: str | None, workers: int, threads: int | None, executor: str, address: str | None,
        amp: str | None, amp_attacks: bool, channels_last: bool, dry_run: bool, no_report: bool, quiet: bool,
        results_dir: str | None, registry_path: str | None) -> None:
    """Run a grid: train, defend, attack, evaluate (cached stages are reused) and write the report.

    Exit code 0: every cell evaluated; 1: some cells failed (each has a record with the error);
    2: a mistake in the input (nothing was run).
    """
    if executor == "ray" and workers != 1:
        raise UserError("--workers is for the local executor; Ray runs as many stages as the cluster has CPUs")
    from hashbench.harness.config import is_grid_path
    from hashbench.results import check_run_name

    # the run's folder is <results>/<name>: a name, never a path, checked before any work
    if run_name is not None:
        check_run_name(run_name, "--run")
    elif is_grid_path(grid):
        check_run_name(Path(grid).stem, f"--grid {grid}: the run is named after the file's stem",
                       "pass --run NAME, or name the file differently")
    if workers > 1 and not dry_run:
        from hashbench.harness.executors.processes import start_worker_server

        # before anything here imports torch: the server's imports (torch, TorchDynamo, the
        # stages) then overlap this process's, which otherwise waits ≈ 2.5 s for them in run()
        start_worker_server()
    from hashbench.harness.runner import Runner
    from hashbench.progress import default_reporter

    plan = _plan(registry_path, grid, profile, overrides, pretrained, amp, amp_attacks, require_data=not dry_run)
    root = _results_dir(results_dir)
    if dry_run:
        _print_plan(plan, root, device, as_json=False)
        return
    name = check_run_name(run_name if run_name is not None else plan.grid_name, "--run")
    reporter = default_reporter(quiet)
    try:
        runner = Runner(root, device, reporter, workers=workers, executor=executor, address=address,
                        channels_last=channels_last, threads=threads)
        summary = runner.run(plan, name)
    finally:
        reporter.close()
    console = Console(stderr=True)
    # names, paths and error texts are shown as text, never read as markup
    console.print(f"run [bold]{markup(summary.run)}[/]: {summary.cells} cells, {summary.executed_total} stages "
                  f"executed, {summary.cached_total} cached, {summary.wall_s:.1f}s; results in "
                  f"{markup(summary.folder)}", highlight=False, soft_wrap=True)
    if not no_report:
        from hashbench.report import write_report

        paths = write_report(summary.run, results_dir=root, html=True, csv=True, warn=_warn)
        console.print(f"report: {markup(paths[0])}", highlight=False, soft_wrap=True)
    if summary.failed:
        console.print(f"[red]{len(summary.failed)} of {summary.cells} cells failed[/]", markup=True)
        for failure in summary.failed:
            console.print(f"[red]failed[/] {markup(failure['cell_id'])} ({markup(failure['stage'])} stage): "
                          f"{markup(failure['error'])}",
                          markup=True, highlight=False)
        sys.exit(1)


def _warn(message: str) -> None:
    """One warning line on stderr (e.g. a record file the report leaves out)."""
    click.echo(f"hashbench: warning: {plain(message, one_line=True)}", err=True)


def _fmt_seconds(s: float | None) -> str:
    """A duration for people: ``8.5s``, ``42s``, ``15m 0s``, ``2h 5m``, ``1.5d``.

    Rounded once, to the unit shown last, before it is split, so 899.7 s is ``15m 0s``
    (never ``14m 60s``) and 3599.6 s is ``1h 0m``.
    """
    if s is None:
        return "unknown"
    if round(s, 1) < 10:
        return f"{s:.1f}s"
    if round(s) < 60:
        return f"{round(s)}s"
    if round(s) < 3600:
        minutes, seconds = divmod(round(s), 60)
        return f"{minutes}m {seconds}s"
    if round(s / 60) < 24 * 60:
        hours, minutes = divmod(round(s / 60), 60)
        return f"{hours}h {minutes}m"
    return f"{s / 86400:.1f}d"


def _fmt_flops(f: int | None) -> str:
    if f is None:
        return "unknown"
    for unit, scale in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6)):
        if f >= scale:
            return f"{f / scale:.1f} {unit}FLOP"
    return f"{f:.0f} FLOP"


def _print_plan(plan, root: Path, device: str, as_json: bool, rate=None) -> None:
    """The plan table (or ``--json``): per stage kind, per member grid, the union's total and its bytes.

    ``rate`` (:class:`hashbench.harness.devices.Rate`) prices the plan on a device that is not here;
    ``None`` estimates for ``device`` of this machine.
    """
    from hashbench.harness.plan import away_from_defaults
    from hashbench.harness.pricing import bytes_by_kind, estimator, format_hours, member_totals, rate_caption, total_row
    from hashbench.harness.store import ArtifactStore, format_bytes
    from hashbench.results import check_results_path

    store = ArtifactStore(check_results_path(root) / "store")
    estimate, label, unit = estimator(store, device, rate)
    rows = estimate(plan)
    sizes = bytes_by_kind(plan, store)
    total = total_row(rows, sizes)
    members = member_totals(plan, store, estimate)
    if as_json:
        pricing = rate.as_dict() if rate is not None else {"name": device, "label": label,
                                                           "basis": "timings, else FLOPs / the measured rate of each stage's network"}
        stages = [{**r.as_dict(), "bytes": sizes[r.stage].known, "bytes_unknown": sizes[r.stage].unknown}
                  for r in rows]
        grids = plan.cell_grids()
        cell_params = [{"id": c.cell_id, "grids": grids.get(c.cell_id, [c.grid]), **c.coords,
                        "params": c.resolved_params()} for c in plan.cells]
        click.echo(json.dumps({"grid": plan.grid_name, "grids": plan.members, "profile": plan.profile_name,
                               "cells": len(plan.cells), "device": label, "pricing": pricing,
                               "amp": plan.options.amp, "stages": stages, "total": total,
                               "member_totals": [m.as_dict() for m in members],
                               "unavailable": plan.unavailable, "split_notes": plan.split_notes,
                               "non_default_params": away_from_defaults(plan), "cell_params": cell_params},
                              indent=2))
        return
    title = f"plan: grid {markup(plan.grid_name)}, profile {markup(plan.profile_name)}, {len(plan.cells)} cells"
    caption = (rate_caption(rate, plan.options.amp, plan.options.amp_attacks) if rate is not None else
               f"estimates for {label}; basis: timings = earlier runs on this device, flops = FLOPs / the "
               "measured rate of the stage's network, plus reading its images and storing its artifact (an estimate, "
               "not a bound)")
    table = Table(title=title, caption=markup(caption))
    for col in ("stage", "total", "cached", "to run", "FLOPs", "estimated time", "basis"):
        table.add_column(col, justify="left" if col in ("stage", "basis") else "right")
    for r in [row.as_dict() for row in rows] + [total]:
        est = "-" if r["to_run"] == 0 else _fmt_seconds(r["estimated_s"])
        flops = "-" if r["to_run"] == 0 else _fmt_flops(r["flops"])
        table.add_row(markup(r["stage"]), str(r["total"]), str(r["cached"]), str(r["to_run"]), flops, est,
                      markup(r["basis"] or "-"), end_section=r["stage"] == rows[-1].stage)
    console = Console()
    console.print(table)
    if members:
        console.print(_member_table(plan.grid_name, members, total, unit))
    changed = away_from_defaults(plan)
    if changed:
        console.print(_params_table(changed, union=len(plan.members) > 1))
    unknown = f" ({total['bytes_unknown']} stages of unknown size not counted)" if total["bytes_unknown"] else ""
    # the time's unit is the device's: GPU-hours on a GPU, hours on a CPU
    seconds = total["estimated_s"]
    time = ("time unknown (a stage has no FLOP count)" if seconds is None else
            f"≈ {format_hours(seconds)} {unit} ({_fmt_seconds(seconds)})")
    console.print(f"total: {time} on {markup(label)}; artifacts to write ≈ {format_bytes(total['bytes'])}{unknown}",
                  highlight=False, soft_wrap=True)
    for name, why in plan.unavailable.items():
        console.print(f"[yellow]dataset {markup(name)} is not available here[/] (its stages' keys are "
                      f"provisional): {markup(why)}",
                      markup=True, highlight=False)
    for name, note in plan.split_notes.items():
        console.print(f"[yellow]warning: dataset {markup(name)}[/]: {markup(note)}", markup=True, highlight=False,
                      soft_wrap=True)


def _params_table(changed: list[dict[str, Any]], union: bool) -> Table:
    """The parameters away from the plugins' defaults (``plan.away_from_defaults``), one row per plugin
    and set of values, with the datasets (and, for a union, the grids) whose cells use them."""
    from rich import box

    table = Table(title="parameters away from the plugins' defaults", box=box.SIMPLE_HEAD,
                  caption="after the profile, the grid's params and params_by_dataset, and --set; "
                          "every value of every cell: --json (cell_params)")
    columns = ("plugin", "values", *(("grids",) if union else ()), "datasets")
    for col in columns:
        table.add_column(col, overflow="fold")
    for entry in changed:
        values = " ".join(f"{k}={_yaml_scalar(v)}" for k, v in entry["values"].items())
        where = [", ".join(entry["grids"])] if union else []
        table.add_row(markup(f"{entry['kind']} {entry['name']}"), markup(values), *map(markup, where),
                      markup(", ".join(entry["datasets"])))
    return table


def _yaml_scalar(value: Any) -> str:
    """A parameter value as it would be written in registry.yaml (true, 0.05, [64, 32], pytorch_default)."""
    return value if isinstance(value, str) else json.dumps(value)


def _member_table(union: str, members, total: dict[str, Any], unit: str) -> Table:
    """Per member grid of a union: stages, to run, FLOPs, estimated hours and bytes; then the union's total."""
    from rich import box

    from hashbench.harness.pricing import format_hours
    from hashbench.harness.store import format_bytes

    table = Table(title=f"per grid of {markup(union)}", box=box.SIMPLE_HEAD,
                  caption="each grid counts the stages it plans; the union counts a stage that several grids share "
                          "once, so its total is at most the sum of the grids'. bytes+: some sizes unknown (prepare)")
    for col in ("grid", "stages", "to run", "FLOPs", unit, "bytes"):
        table.add_column(col, justify="left" if col == "grid" else "right")
    lines = [(m.grid, m.stages, m.to_run, m.flops, m.estimated_s, m.bytes.known, m.bytes.unknown) for m in members]
    lines.append((f"union {union}", total["total"], total["to_run"], total["flops"], total["estimated_s"],
                  total["bytes"], total["bytes_unknown"]))
    for i, (grid, stages, to_run, flops, seconds, known, unknown) in enumerate(lines):
        cells = ([_fmt_flops(flops), format_hours(seconds),
                  format_bytes(known) + ("+" if unknown else "")] if to_run else ["-"] * 3)
        table.add_row(markup(grid), str(stages), str(to_run), *cells,
                      end_section=i == len(lines) - 2)
    return table


@main.command()
@grid_option
@click.option("--profile", default=None)
@set_option
@click.option("--device", default="auto", show_default=True,
              help="auto, cpu or cuda: this machine (recorded timings, else the measured rate); or a device to "
                   f"price the grid for: {', '.join(n for n in DEVICES if n != 'cpu')} (peak TFLOPS × achieved "
                   "fraction).")
@click.option("--tflops", type=float, default=None,
              help="Price for a device of this peak TFLOPS instead (× the achieved fraction).")
@click.option("--achieved-fraction", type=float, default=None,
              help="Share of peak the networks reach, with --device NAME or --tflops (default 0.4 on GPUs).")
@amp_option
@amp_attacks_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@results_option
@registry_option
@_user_errors
def plan(grid: str, profile: str | None, overrides: tuple[str, ...], device: str, tflops: float | None,
         achieved_fraction: float | None, amp: str | None, amp_attacks: bool, as_json: bool,
         results_dir: str | None, registry_path: str | None) -> None:
    """Show a grid's stages by kind, how many are cached, and the estimated cost of the rest."""
    from hashbench.harness.pricing import resolve_rate

    rate = resolve_rate(device, tflops, achieved_fraction)  # before planning: a wrong name fails at once
    plan_ = _plan(registry_path, grid, profile, overrides, None, amp, amp_attacks, require_data=False)
    _print_plan(plan_, _results_dir(results_dir), device, as_json, rate)


@main.command()
@grid_option
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]),
              help="Device a run would use.")
@click.option("--pretrained", default=None,
              help="Check as `run --pretrained` would use: 'imagenet', 'none' or a state_dict file.")
@results_option
@registry_option
@_user_errors
def doctor(grid: str, device: str, pretrained: str | None, results_dir: str | None,
           registry_path: str | None) -> None:
    """Check that a grid can run here: data, weights, device, disk; each problem with its fix.

    Exit code 0: the grid can run; 1: a problem was found; 2: a mistake in the input.  Writes nothing.
    """
    import warnings

    from hashbench.harness.config import load_config
    from hashbench.harness.doctor import diagnose
    from hashbench.results import check_results_path

    root = check_results_path(_results_dir(results_dir))
    with warnings.catch_warnings():  # unlabelled rows and the like are findings, not warnings
        warnings.simplefilter("ignore")
        plan_ = _plan(registry_path, grid, None, (), pretrained, require_data=False)
    findings = diagnose(load_config(registry_path), plan_, root, device)
    console = Console(highlight=False, soft_wrap=True)
    console.print(f"doctor: grid {markup(plan_.grid_name)}, profile {markup(plan_.profile_name)}, "
                  f"{len(plan_.cells)} cells")
    for f in findings:
        tag = "[red]problem[/]" if not f.ok else "[yellow]note[/]   " if f.warning else "[green]ok[/]     "
        console.print(f"{tag} {markup(f.subject)}: {markup(f.detail)}")
        if f.fix:
            console.print(f"        fix: {markup(f.fix)}")
    problems = sum(not f.ok for f in findings)
    if problems:
        console.print(f"[red]{problems} problem{'s' if problems > 1 else ''}[/]: fix them, then run "
                      "`hashbench doctor` again")
        sys.exit(1)
    console.print("[green]the grid can run here[/]")


@main.command()
@click.option("--run", "run_name", default=None, help="Run name or folder (default: the latest run).")
@click.option("--html", is_flag=True, help="Write index.html (the default when no format is given).")
@click.option("--latex", is_flag=True, help="Write tables.tex: booktabs tables laid out as the papers'.")
@click.option("--csv", is_flag=True, help="Write results.csv: tidy, one row per cell and seed.")
@click.option("--markdown", is_flag=True, help="Write report.md: leaderboards and paper-layout tables.")
@click.option("--json", "as_json", is_flag=True, help="Write report.json: every number, with the papers'.")
@click.option("--figure-attacks", default=None, metavar="A,B",
              help="Attacks of the PR/P@N figures and examples (default: dhta,sdha where they ran).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Output folder (default: reports/<run>).")
@results_option
@_user_errors
def report(run_name: str | None, html: bool, latex: bool, csv: bool, markdown: bool, as_json: bool,
           figure_attacks: str | None, out_dir: str | None, results_dir: str | None) -> None:
    """Write the report of a run: HTML, LaTeX, CSV, Markdown and/or JSON."""
    from hashbench.report import write_report
    from hashbench.results import latest_run

    root = _results_dir(results_dir)
    name = run_name if run_name is not None else latest_run(root)
    if not (html or latex or csv or markdown or as_json):
        html = True
    attacks = [a.strip() for a in figure_attacks.split(",") if a.strip()] if figure_attacks else None
    for path in write_report(name, results_dir=root, out_dir=out_dir, html=html, csv=csv, latex=latex,
                             markdown=markdown, json=as_json, figure_attacks=attacks, warn=_warn):
        click.echo(str(path))


@main.command(name="list")
@click.argument("kind", required=False, type=click.Choice(KINDS))
@registry_option
@_user_errors
def list_(kind: str | None, registry_path: str | None) -> None:
    """List plugins (name, origin, description, paper), grids or profiles."""
    from hashbench import plugins

    console = Console()
    for k in [kind] if kind else KINDS:
        if k in ("grids", "profiles"):
            from hashbench.harness.config import load_config

            config = load_config(registry_path)
            table = Table(title=k)
            table.add_column("name")
            table.add_column("description")
            for name, item in getattr(config.data, k).items():
                table.add_row(markup(name), markup(item.description))
            console.print(table)
            continue
        table = Table(title=k)
        for col in ("name", "origin", "description", "paper"):
            table.add_column(col)
        for info in plugins.BY_KIND[k].infos():
            # plugin text is shown as written, never read as terminal markup or obeyed as control codes
            desc = markup(info.description) if info.error is None else f"[red]failed to load: {markup(info.error)}[/]"
            table.add_row(markup(info.name), markup(info.origin), desc, markup(info.paper))
        console.print(table)


@main.command()
@click.argument("run_a")
@click.argument("run_b")
@click.option("--threshold", type=click.FloatRange(min=0), default=None, metavar="X",
              help="Exit 1 when a cell's MAP differs by more than X points (percent), or is in one run only.")
@results_option
@_user_errors
def compare(run_a: str, run_b: str, threshold: float | None, results_dir: str | None) -> None:
    """Compare two runs cell by cell: MAP of each and the difference (B − A), in percent.

    With ``--threshold X`` it is a regression gate: exit code 1 when any cell's MAP differs by
    more than X points or a cell is missing from one run, 0 otherwise.
    """
    from hashbench.results import load

    root = _results_dir(results_dir)
    keys = ["dataset", "method", "backbone", "bits", "defense", "attack", "seed"]
    a, b = load(run_a, root), load(run_b, root)
    if a["surrogate"].notna().any() or b["surrogate"].notna().any():  # transfer cells: a coordinate of their own
        keys.insert(keys.index("seed"), "surrogate")
        a, b = (frame.assign(surrogate=frame["surrogate"].fillna("")) for frame in (a, b))
    merged = a[keys + ["map"]].merge(b[keys + ["map"]], on=keys, how="outer", suffixes=("_a", "_b"))
    table = Table(title=f"{markup(run_a)} vs {markup(run_b)} (MAP %)")
    for col in keys + [run_a, run_b, "Δ"]:
        table.add_column(markup(col))
    beyond = []
    for _, r in merged.iterrows():
        ma, mb = r["map_a"], r["map_b"]
        fmt = lambda v: "-" if v != v else f"{100 * v:.2f}"  # noqa: E731  (NaN: cell missing in one run)
        missing = ma != ma or mb != mb
        delta = None if missing else 100 * (mb - ma)
        diff = "-" if delta is None else f"{delta:+.2f}"
        if threshold is not None and (missing or abs(delta) > threshold):
            cell = "-".join(str(r[k]) for k in keys if r[k] != "")  # a white-box cell has no surrogate
            beyond.append(cell + (" (in one run only)" if missing else f" ({diff})"))
            diff = f"[red]{diff}[/]"
        table.add_row(*[markup(r[k]) for k in keys], fmt(ma), fmt(mb), diff)
    Console().print(table)
    if threshold is None:
        return
    if beyond:
        click.echo(f"{len(beyond)} of {len(merged)} cells differ by more than {threshold:g} MAP points: "
                   + plain(", ".join(beyond), one_line=True), err=True)
        sys.exit(1)
    click.echo(f"all {len(merged)} cells within {threshold:g} MAP points", err=True)


@main.command()
@click.option("--quick", is_flag=True, help="Each benchmark's smaller configuration.")
@click.option("--only", default=None, metavar="A,B", help="Only these scripts, e.g. bench_pgd,bench_reuse.")
@_user_errors
def bench(quick: bool, only: str | None) -> None:
    """Run the performance benchmarks (``python -m benchmarks`` of the source checkout)."""
    import subprocess

    checkout = Path(__file__).resolve().parents[2]
    if not (checkout / "benchmarks" / "__main__.py").is_file():
        raise UserError(f"the benchmarks live in the source checkout; {checkout / 'benchmarks'} does not exist")
    cmd = [sys.executable, "-m", "benchmarks", *(["--quick"] if quick else []), *(["--only", only] if only else [])]
    sys.exit(subprocess.run(cmd, cwd=checkout).returncode)


if __name__ == "__main__":
    main()
