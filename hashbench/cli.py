"""The ``hashbench`` command line: run, plan, report, list, compare."""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

import click
from rich.console import Console
from rich.table import Table

from .errors import ArtifactError, HashbenchError, UserError

RESULTS_ENV = "HASHBENCH_RESULTS"
KINDS = ("methods", "backbones", "datasets", "attacks", "defenses", "grids", "profiles")


def _user_errors(fn: Callable) -> Callable:
    """Turn hashbench's own errors into one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (UserError, ArtifactError) as exc:
            click.echo(f"hashbench: error: {exc}", err=True)
            sys.exit(2)
        except HashbenchError as exc:
            click.echo(f"hashbench: failed: {exc}", err=True)
            sys.exit(1)

    return wrapper


def _results_dir(value: str | None) -> Path:
    return Path(value or os.environ.get(RESULTS_ENV) or "results")


results_option = click.option("--results-dir", type=click.Path(file_okay=False), default=None,
                              help=f"Where runs and the artifact store live (default: ./results or ${RESULTS_ENV}).")
registry_option = click.option("--registry", "registry_path", type=click.Path(dir_okay=False), default=None,
                               help="registry.yaml to read (default: the project's, or $HASHBENCH_REGISTRY).")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hashbench")
def main() -> None:
    """hashbench: how robust is a deep-hashing model, under every attack, with every defense?"""


def _plan(registry_path: str | None, grid: str, profile: str | None, pretrained: str | None = None):
    from .config import load_config
    from .plan import build_plan

    config = load_config(registry_path)
    grid_spec = config.grid(grid)
    if pretrained is not None:
        params = {k: {n: dict(v) for n, v in table.items()} for k, table in grid_spec.params.items()}
        backbones = params.setdefault("backbones", {})
        from . import registries

        for name in grid_spec.backbones:
            if "pretrained" in registries.backbones.get(name).Params.model_fields:
                backbones.setdefault(name, {})["pretrained"] = pretrained
        grid_spec = grid_spec.model_copy(update={"params": params})
    return build_plan(config, grid, grid_spec, profile)


@main.command()
@click.option("--grid", default="demo", show_default=True, help="Grid from registry.yaml.")
@click.option("--profile", default=None, help="Profile (default: the grid's own).")
@click.option("--run", "run_name", default=None, help="Run name (default: the grid's name).")
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--pretrained", default=None,
              help="Override every backbone's ImageNet weights: 'imagenet', 'none' or a state_dict file.")
@click.option("--dry-run", is_flag=True, help="Show the plan and stop.")
@click.option("--no-report", is_flag=True, help="Do not write the HTML report at the end.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@results_option
@registry_option
@_user_errors
def run(grid: str, profile: str | None, run_name: str | None, device: str, pretrained: str | None, dry_run: bool,
        no_report: bool, quiet: bool, results_dir: str | None, registry_path: str | None) -> None:
    """Run a grid: train, defend, attack, evaluate (cached stages are reused) and write the report."""
    from .progress import default_reporter
    from .runner import LocalRunner, resolve_device

    plan = _plan(registry_path, grid, profile, pretrained)
    root = _results_dir(results_dir)
    if dry_run:
        _print_plan(plan, root, as_json=False)
        return
    torch_device = resolve_device(device)
    _configure_torch()
    reporter = default_reporter(quiet)
    try:
        summary = LocalRunner(root, torch_device, reporter).run(plan, run_name or grid)
    finally:
        reporter.close()
    console = Console(stderr=True)
    console.print(f"run [bold]{summary.run}[/]: {summary.cells} cells, {summary.executed_total} stages executed, "
                  f"{summary.cached_total} cached, {summary.wall_s:.1f}s; results in {summary.folder}")
    if not no_report:
        from .report import write_report

        paths = write_report(summary.run, results_dir=root, html=True, csv=True)
        console.print(f"report: {paths[0]}")
    if summary.failed:
        for failure in summary.failed:
            console.print(f"[red]failed[/] {failure['cell_id']}: {failure['error']}", markup=True, highlight=False)
        sys.exit(1)


def _configure_torch() -> None:
    import torch

    torch.use_deterministic_algorithms(True, warn_only=True)


def _print_plan(plan, root: Path, as_json: bool) -> None:
    from .plan import STAGE_KINDS
    from .store import ArtifactStore
    from .timings import estimate_seconds

    store = ArtifactStore(root / "store")
    stages = plan.stages()
    rows = []
    for kind in STAGE_KINDS:
        of_kind = [s for s in stages if s.kind == kind]
        if not of_kind:
            continue
        cached = sum(store.exists(kind, s.key) for s in of_kind)
        todo = [s for s in of_kind if not store.exists(kind, s.key)]
        estimate = estimate_seconds(store, todo)
        rows.append({"stage": kind, "total": len(of_kind), "cached": cached, "to_run": len(todo),
                     "estimated_s": estimate})
    if as_json:
        click.echo(json.dumps({"grid": plan.grid_name, "profile": plan.profile_name, "cells": len(plan.cells),
                               "stages": rows}, indent=2))
        return
    table = Table(title=f"plan: grid {plan.grid_name}, profile {plan.profile_name}, {len(plan.cells)} cells")
    for col in ("stage", "total", "cached", "to run", "estimated time"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for r in rows:
        est = r["estimated_s"]
        table.add_row(r["stage"], str(r["total"]), str(r["cached"]), str(r["to_run"]),
                      "-" if r["to_run"] == 0 else ("unknown" if est is None else f"{est:.0f}s"))
    Console().print(table)


@main.command()
@click.option("--grid", default="demo", show_default=True)
@click.option("--profile", default=None)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@results_option
@registry_option
@_user_errors
def plan(grid: str, profile: str | None, as_json: bool, results_dir: str | None, registry_path: str | None) -> None:
    """Show a grid's stages, how many are cached and the estimated time of the rest."""
    _print_plan(_plan(registry_path, grid, profile), _results_dir(results_dir), as_json)


@main.command()
@click.option("--run", "run_name", default=None, help="Run name or folder (default: the latest run).")
@click.option("--html", is_flag=True, help="Write index.html (the default when no format is given).")
@click.option("--csv", is_flag=True, help="Write results.csv.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Output folder (default: reports/<run>).")
@results_option
@_user_errors
def report(run_name: str | None, html: bool, csv: bool, out_dir: str | None, results_dir: str | None) -> None:
    """Write the report of a run."""
    from .report import write_report
    from .results import latest_run

    root = _results_dir(results_dir)
    name = run_name or latest_run(root)
    if not (html or csv):
        html = True
    for path in write_report(name, results_dir=root, out_dir=out_dir, html=html, csv=csv):
        click.echo(str(path))


@main.command(name="list")
@click.argument("kind", required=False, type=click.Choice(KINDS))
@registry_option
@_user_errors
def list_(kind: str | None, registry_path: str | None) -> None:
    """List plugins (name, origin, description, paper), grids or profiles."""
    from . import registries

    console = Console()
    for k in [kind] if kind else KINDS:
        if k in ("grids", "profiles"):
            from .config import load_config

            config = load_config(registry_path)
            table = Table(title=k)
            table.add_column("name")
            table.add_column("description")
            for name, item in getattr(config.data, k).items():
                table.add_row(name, item.description)
            console.print(table)
            continue
        table = Table(title=k)
        for col in ("name", "origin", "description", "paper"):
            table.add_column(col)
        for info in registries.BY_KIND[k].infos():
            desc = info.description if info.error is None else f"[red]failed to load: {info.error}[/]"
            table.add_row(info.name, info.origin, desc, info.paper)
        console.print(table)


@main.command()
@click.argument("run_a")
@click.argument("run_b")
@results_option
@_user_errors
def compare(run_a: str, run_b: str, results_dir: str | None) -> None:
    """Compare two runs cell by cell: MAP of each and the difference (B − A), in percent."""
    from .results import load

    root = _results_dir(results_dir)
    keys = ["dataset", "method", "backbone", "bits", "defense", "attack", "seed"]
    a, b = load(run_a, root), load(run_b, root)
    merged = a[keys + ["map"]].merge(b[keys + ["map"]], on=keys, how="outer", suffixes=("_a", "_b"))
    table = Table(title=f"{run_a} vs {run_b} (MAP %)")
    for col in keys + [run_a, run_b, "Δ"]:
        table.add_column(col)
    for _, r in merged.iterrows():
        ma, mb = r["map_a"], r["map_b"]
        fmt = lambda v: "-" if v != v else f"{100 * v:.2f}"  # NaN: cell missing in one run
        diff = "-" if (ma != ma or mb != mb) else f"{100 * (mb - ma):+.2f}"
        table.add_row(*[str(r[k]) for k in keys], fmt(ma), fmt(mb), diff)
    Console().print(table)


if __name__ == "__main__":
    main()
