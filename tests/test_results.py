"""``hashbench.results`` from Python: where a run is looked for when no results folder is given."""

from __future__ import annotations

from pathlib import Path

import pytest
from report_records import RUN, make_record, write_run

from hashbench.results import RESULTS_ENV, default_results_dir, load, run_dir


def test_load_reads_the_results_folder_named_by_the_environment(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "elsewhere"
    write_run(elsewhere, [make_record(attack=a) for a in ("clean", "center")])
    monkeypatch.chdir(tmp_path)  # no ./results here: only the variable can lead to the run
    monkeypatch.setenv(RESULTS_ENV, str(elsewhere))
    assert run_dir(RUN) == elsewhere / RUN
    frame = load(RUN)
    assert sorted(frame["attack"]) == ["center", "clean"]
    assert set(frame["run"]) == {RUN}


def test_without_the_variable_the_results_folder_is_results(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(RESULTS_ENV, raising=False)
    assert default_results_dir() == Path("results")
    monkeypatch.setenv(RESULTS_ENV, "")  # empty: as unset, as the command line treats it
    assert default_results_dir() == Path("results")
