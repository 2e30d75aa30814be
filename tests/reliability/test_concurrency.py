"""Concurrency (issue 9): a report generated while a run writes its records.

Two runners on one results folder are covered by
tests/test_parallel.py::test_two_runs_on_one_results_folder_share_the_work.
"""

from __future__ import annotations

import json
import subprocess
import time

from runner_helpers import SMALL_CELLS, cli_command, cli_env

from hashbench.report import write_report
from hashbench.results import read_records


def test_report_while_a_run_writes(tmp_path):
    """Reports made over and over while a run writes never fail and never show a torn record;
    the records they see only grow, and the last one shows every cell."""
    results, out = tmp_path / "results", tmp_path / "report"
    proc = subprocess.Popen(cli_command(results), env=cli_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    seen: list[int] = []
    during = 0
    try:
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline:
            if not (results / "smoke" / "run.json").exists():
                time.sleep(0.05)
                continue
            # every record file on disk is whole JSON at every instant (written by rename)
            for path in (results / "smoke" / "records").glob("*.json"):
                record = json.loads(path.read_text())
                assert record["status"] == "ok" and "metrics" in record, path
            records = read_records("smoke", results)
            paths = write_report("smoke", results_dir=results, out_dir=out, html=True, csv=True)
            assert all(p.stat().st_size > 0 for p in paths)
            seen.append(len(records))
            during += proc.poll() is None
    finally:
        if proc.poll() is None:
            proc.kill()
        stderr = proc.communicate(timeout=60)[1]
    assert proc.returncode == 0, stderr
    assert during >= 1, seen  # at least one report was made while the run was writing
    assert seen == sorted(seen)  # records only appear, never vanish
    write_report("smoke", results_dir=results, out_dir=out, html=True, csv=True)
    assert len(read_records("smoke", results)) == SMALL_CELLS
