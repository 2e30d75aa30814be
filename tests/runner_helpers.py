"""A small grid for runner-mechanics tests: the smoke grid restricted to DPSH × {none, CgAT} × center.

The smoke grid itself is every plugin (a large cross product); caching, crash, parallel and
CLI tests only need a few stages, so they restrict it the way a user would, with ``--set``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from hashbench import plugins
from hashbench.harness.config import Config, apply_overrides
from hashbench.harness.executors.parallel import threads_per_worker
from hashbench.harness.executors.worker import CRASH_ENV
from hashbench.harness.plan import Plan, PlanOptions, plan_members
from hashbench.harness.runner import Runner
from hashbench.results import read_records

SMALL_SET = ["methods=[dpsh]", "defenses=[none,cgat]", "attacks=[center]"]
#: what the small grid plans: 1 split, its random-codes reference, 1 backbone warm start, 1 clean
#: model, 1 defended model, the codes of both, the attack on both, 4 evaluations (clean and
#: attacked, per defense)
SMALL_STAGES = {"split": 1, "chance": 1, "pretrain": 1, "train": 1, "defend": 1, "encode": 2, "attack": 2,
                "evaluate": 4}
SMALL_CELLS = 4
#: runs compared across processes use the thread count of one of two workers, so float reductions agree
THREADS = threads_per_worker(2)


def small_plan(config: Config, extra: list[str] | None = None, options: PlanOptions | None = None) -> Plan:
    members = apply_overrides(config, config.members("smoke"), SMALL_SET + list(extra or []))
    return plan_members(config, "smoke", members, options=options)


def small_cli_args() -> list[str]:
    return ["--grid", "smoke", *[a for s in SMALL_SET for a in ("--set", s)]]


def metrics(run: str, results_dir: Path) -> dict[str, dict]:
    """cell id → metrics of every successful record."""
    return {r["cell_id"]: r["metrics"] for r in read_records(run, results_dir) if r.get("status") != "failed"}


def timings(results_dir: Path) -> list[dict]:
    path = Path(results_dir) / "store" / "timings.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def unregistered(names: dict[str, list[str]]) -> list[str]:
    """``kind:name`` of every plugin in ``names`` that is not registered (yet)."""
    return [f"{kind[:-1]} {n}" for kind, ns in names.items() for n in ns if n not in plugins.BY_KIND[kind]]


def reference_run(config: Config, root: Path) -> dict[str, dict]:
    """Run the small grid in this process with :data:`THREADS` torch threads; its metrics."""
    threads = torch.get_num_threads()
    try:
        Runner(root, "cpu", threads=THREADS).run(small_plan(config), "smoke")
    finally:
        torch.set_num_threads(threads)  # the runner set this process's threads
    return metrics("smoke", root)


def cli_command(results_dir: Path, *extra: str) -> list[str]:
    """``hashbench run`` of the small grid on the CPU with :data:`THREADS` threads, quiet, without a report."""
    return [sys.executable, "-m", "hashbench.cli.main", "run", *small_cli_args(), "--device", "cpu", "--quiet",
            "--no-report", "--threads", str(THREADS), "--results-dir", str(results_dir), *extra]


def cli_env(crash: str | None = None) -> dict[str, str]:
    """This environment with, if given, the crash point ``HASHBENCH_CRASH_AFTER``."""
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    if crash:
        env[CRASH_ENV] = crash
    return env


def run_cli(results_dir: Path, crash: str | None = None, *extra: str) -> subprocess.CompletedProcess:
    """Run :func:`cli_command` in a subprocess, optionally killing itself at ``crash``."""
    return subprocess.run(cli_command(results_dir, *extra), env=cli_env(crash), capture_output=True, text=True,
                          timeout=600)


def partials(results_dir: Path) -> list[Path]:
    """Temporary folders of artifact writes that never completed."""
    return [p for p in (Path(results_dir) / "store").rglob(".*") if p.is_dir()]
