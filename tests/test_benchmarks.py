"""Smoke tests of the benchmark scripts (benchmarks/): each one's smallest configuration runs,
writes its JSON, holds its value checks and ends with the ``name: ratio`` line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def results(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("HASHBENCH_BENCH_RESULTS", str(tmp_path))
    monkeypatch.chdir(ROOT)
    monkeypatch.syspath_prepend(str(ROOT))  # benchmarks/ is a top-level package of the checkout
    return tmp_path


def final_line(capsys) -> str:
    return capsys.readouterr().out.strip().splitlines()[-1]


def test_metrics_agree_with_the_naive_baseline_and_report_memory(results, capsys):
    from benchmarks import bench_metrics

    rc = bench_metrics.main(["--queries", "30", "--database", "400", "--bits", "16", "--repeat", "1",
                             "--memory-queries", "20", "--memory-database", "2000"])
    assert rc == 0
    report = json.loads((results / "metrics.json").read_text())
    assert report["all_agree"] is True
    assert set(report["results"]) == {"map_at_k", "pr_curve", "precision_at_n", "recall_at_n",
                                      "precision_at_radius"}
    assert all(r["max_abs_diff"] <= 1e-6 for r in report["results"].values())
    if report["environment"]["ranking_backend"] == "compiled":  # the NumPy fallback is timed beside it
        assert all(r["numpy_ranking_identical"] and r["numpy_ranking_s"] > 0 for r in report["results"].values())
    memory = report["memory"]
    assert memory["dense_naive_bytes"] == 20 * 2000 * bench_metrics.DENSE_BYTES_PER_PAIR
    assert 0 < memory["tracemalloc_peak_bytes"] < memory["peak_rss_bytes"] <= 2 * 1024**3
    assert final_line(capsys).startswith(f"metrics: {report['ratio']:.3f}")


def test_a_disagreeing_metric_fails_the_metrics_benchmark(results, monkeypatch, capsys):
    from benchmarks import bench_metrics

    monkeypatch.setattr(bench_metrics, "naive_precision_at_n", lambda *a: [0.5] * 10)
    rc = bench_metrics.main(["--queries", "10", "--database", "200", "--bits", "8", "--repeat", "1",
                             "--memory-queries", "0"])
    assert rc == 1
    report = json.loads((results / "metrics.json").read_text())
    assert report["all_agree"] is False and report["results"]["precision_at_n"]["agree"] is False


def test_pgd_overhead_is_timed_against_the_bare_passes(results, capsys):
    from benchmarks import bench_pgd

    assert bench_pgd.main(["--quick", "--repeats", "1", "--iterations", "1", "--models", "smallcnn"]) == 0
    report = json.loads((results / "pgd.json").read_text())
    r = report["results"]["smallcnn"]
    assert r["ours_s_per_iter"] > 0 and r["reference_s_per_iter"] > 0
    assert report["ratio"] == pytest.approx(r["ours_s_per_iter"] / r["reference_s_per_iter"])
    assert final_line(capsys).startswith("pgd_overhead: ")


def test_adversarial_training_steps_are_timed_against_their_parts(results, capsys):
    from benchmarks import bench_adversarial

    argv = ["--steps", "2", "--batch", "4", "--width", "8", "--defenses", "cgat"]
    assert bench_adversarial.main(argv) == 0
    r = json.loads((results / "adversarial_training.json").read_text())["results"]["cgat"]
    assert r["steps_timed"] == 2
    assert r["reference_s"] == pytest.approx(sum(r["reference_parts_s"].values()), rel=0.5)
    assert r["ratio"] == pytest.approx(r["ours_s"] / r["reference_s"])
    assert final_line(capsys).startswith("adversarial_training_overhead: ")


def test_the_gpu_benchmark_skips_clearly_without_cuda(results, capsys):
    from benchmarks import bench_gpu

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the real benchmark is exercised by bench_gpu itself")
    assert bench_gpu.main(["--quick"]) == 0
    report = json.loads((results / "gpu.json").read_text())
    assert "no CUDA" in report["skipped"]
    assert final_line(capsys) == "gpu_pgd_peak_fraction: skipped (no CUDA)"


def test_the_gpu_benchmark_measures_on_the_cpu_what_it_measures_on_a_gpu(results, capsys):
    """The CUDA path's measuring code, run on the CPU at a test's size: the figures follow
    from the timings and the FLOP count, and gpu.json (GPU figures) is left alone."""
    from benchmarks import bench_gpu
    from hashbench.harness.flops import forward_flops
    from hashbench.harness.stages.spec import PluginSpec

    args = ["--device", "cpu", "--models", "smallcnn", "--image-size", "32", "--batch", "4", "--iterations", "2",
            "--repeats", "2", "--peak-size", "64"]
    assert bench_gpu.main(args) == 0
    assert not (results / "gpu.json").exists()
    report = json.loads((results / "cpu_throughput.json").read_text())
    assert report["device_name"].startswith("cpu") and report["amp"] == "bf16"
    assert set(report["results"]) == {"smallcnn/fp32", "smallcnn/bf16"}
    fwd = forward_flops(PluginSpec("smallcnn", {}, ("hashbench", "")), 32, 32)
    for r in report["results"].values():
        assert r["forward_flops_per_image"] == fwd > 0
        assert r["images_per_s"] == pytest.approx(4 / r["seconds"])
        assert r["achieved_flops"] == pytest.approx(3 * fwd * 4 * 2 / r["seconds"])
        assert r["peak_fraction"] == pytest.approx(r["achieved_flops"] / r["peak_flops"])
    best = max(r["peak_fraction"] for r in report["results"].values())
    assert report["ratio"] == best
    assert final_line(capsys).startswith(f"cpu_pgd_peak_fraction: {best:.3f}")


def test_the_gpu_benchmark_rejects_an_unknown_device(results, capsys):
    from benchmarks import bench_gpu

    with pytest.raises(SystemExit) as exc:
        bench_gpu.main(["--device", "tpu"])
    assert exc.value.code == 2
    assert "--device: unknown device 'tpu'" in capsys.readouterr().err
    assert not list(results.iterdir())


def test_an_unknown_benchmark_name_is_rejected(results, capsys):
    from benchmarks.__main__ import main

    with pytest.raises(SystemExit) as exc:
        main(["--only", "bench_pgd,bench_nope"])
    assert exc.value.code == 2
    assert "unknown benchmark(s) bench_nope" in capsys.readouterr().err


@pytest.mark.slow
def test_hashbench_bench_runs_python_m_benchmarks(results):
    proc = subprocess.run([sys.executable, "-m", "hashbench.cli.main", "bench", "--quick", "--only", "bench_gpu"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((results / "summary.json").read_text())
    assert summary["quick"] is True and list(summary["scripts"]) == ["bench_gpu"]
    assert summary["scripts"]["bench_gpu"]["final_line"].startswith("gpu_pgd_peak_fraction: ")


@pytest.mark.slow
def test_a_second_run_reuses_every_stage(results, capsys):
    from benchmarks import bench_reuse

    assert bench_reuse.main(["--grid", "small"]) == 0
    report = json.loads((results / "reuse.json").read_text())
    assert report["executed_equals_planned"] is True and report["second_executed"] == 0
    assert report["first"]["executed"] == report["planned"] > 0
    assert report["ratio"] < 1
    assert final_line(capsys).startswith("reuse: ")


@pytest.mark.slow
def test_parallel_runs_both_worker_counts(results, capsys):
    from benchmarks import bench_parallel

    assert bench_parallel.main(["--quick", "--grid", "small"]) == 0
    report = json.loads((results / "parallel.json").read_text())
    assert len(report["runs"]["1"]) == len(report["runs"]["2"]) == len(report["runs"]["1-thread"]) == 1
    assert report["runs"]["1"][0]["executed"] == report["runs"]["2"][0]["executed"] > 0
    assert report["equal_threads_speedup"] == pytest.approx(report["ratio"] * report["intra_op_speedup"])
    assert report["round_ratios"]["speedup"] == [pytest.approx(report["ratio"])]
    assert report["ratio_of_medians"] == pytest.approx(report["ratio"])  # one round: the two agree
    hardware = report["hardware"]
    assert len(hardware["round_scalings"]) == len(hardware["one_alone_steps_per_s"]) == 10
    assert 0.5 < hardware["scaling"] < 4  # two training processes: about twice one, give or take the machine
    assert report["ceiling"] == pytest.approx(hardware["scaling"] / report["intra_op_speedup"])
    assert report["fraction_of_ceiling"] == pytest.approx(report["ratio"] / report["ceiling"])
    assert final_line(capsys) == (f"parallel_speedup: {report['ratio']:.3f}  "
                                  f"(target >= 1.5; this machine's measured ceiling {report['ceiling']:.2f})")


def test_the_summary_keeps_the_other_scripts_entries_when_one_is_re_run(results):
    from benchmarks.__main__ import write_summary

    write_summary({"bench_pgd": {"final_line": "pgd_overhead: 1.0"},
                   "bench_metrics": {"final_line": "metrics: 30"}}, quick=False)
    write_summary({"bench_pgd": {"final_line": "pgd_overhead: 1.1"}}, quick=False)
    scripts = json.loads((results / "summary.json").read_text())["scripts"]
    assert list(scripts) == ["bench_metrics", "bench_pgd"]  # in the scripts' order
    assert scripts["bench_pgd"]["final_line"] == "pgd_overhead: 1.1"
    assert scripts["bench_metrics"]["final_line"] == "metrics: 30" and "created" in scripts["bench_metrics"]
    write_summary({"bench_gpu": {"final_line": "gpu: skipped"}}, quick=True)  # other sizes: starts afresh
    assert list(json.loads((results / "summary.json").read_text())["scripts"]) == ["bench_gpu"]


@pytest.mark.slow
def test_plan_accuracy_compares_estimate_and_run(results, capsys):
    from benchmarks import bench_plan

    bench_plan.main(["--grid", "small"])  # the ratio depends on the machine's load: its value is not asserted
    report = json.loads((results / "plan.json").read_text())
    kinds = {row["stage"]: row for row in report["rows"]}
    assert kinds["train"]["measured_s"] > 0 and kinds["train"]["estimated_s"] > 0
    assert report["ratio"] == pytest.approx(report["estimated_s"] / report["runner_s"])
    assert final_line(capsys).startswith("plan: ")
