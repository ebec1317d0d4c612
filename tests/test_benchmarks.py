"""Benchmarks print figures from real runs: the scale table comes from a training run per size."""

from __future__ import annotations

import json

import pytest

from tfrs_pipeline.cli import main


@pytest.mark.slow
def test_scale_benchmark_trains_each_size_in_its_own_process_and_prints_the_table(tmp_path, capsys):
    out = tmp_path / "scale.json"
    assert main(["benchmark", "scale", "--sizes", "300x200x8000", "--epochs", "1", "--set", "ranker.enabled=false",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "scale benchmark (train options: --epochs 1 --set ranker.enabled=false)" in printed
    row = json.loads(out.read_text())["sizes"]["300x200x8000"]
    assert row["ratings"] == 8000 and row["train_ratings"] + row["test_ratings"] == 8000
    assert row["retrieval"]["epochs"] == 1 and row["retrieval"]["examples_per_second"] > 0
    assert 100 < row["peak_rss_mib"] < 24 * 1024 and row["export_mib"] > 0
    assert set(row["phases"]) == {"data", "retrieval", "ranking", "list_ranker", "export", "evaluation"}
    peaks = [row["phases"][p]["peak_rss_mib"] for p in ("data", "retrieval", "ranking", "export", "evaluation")]
    assert peaks == sorted(peaks)  # a high-water mark never falls


@pytest.mark.slow
def test_retrieval_step_profile_prints_each_part_and_the_tutorial_step(capsys):
    assert main(["benchmark", "retrieval", "--data", "synthetic:300x200x8000", "--profile-steps"]) == 0
    printed = capsys.readouterr().out
    for part in ("query tower", "candidate tower", "loss + gradients + optimizer", "tutorial configuration"):
        assert part in printed
    assert "examples/s: ours" in printed


@pytest.mark.slow
def test_retrieval_benchmark_prints_both_throughputs_overall_and_after_the_first_epoch(tmp_path, capsys):
    out = tmp_path / "retrieval.json"
    assert main(["benchmark", "retrieval", "--data", "synthetic:300x200x8000", "--epochs", "2",
                 "--set", "retrieval.patience=5", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    results = json.loads(out.read_text())
    for model in ("tutorial", "ours"):
        assert results[model]["examples_per_second"] > 0
        assert results[model]["examples_per_second_after_first_epoch"] > 0
    ratio = results["ours"]["examples_per_second"] / results["tutorial"]["examples_per_second"]
    assert f"throughput, ours / tutorial: {ratio:.1f}x" in printed
    assert "in the epochs after the first" in printed


@pytest.mark.slow
def test_serving_benchmark_prints_every_client_count_and_the_servers_batches(trained, tmp_path, capsys):
    out = tmp_path / "serving.json"
    assert main(["benchmark", "serving", "--model", str(trained.path), "--clients", "1,4", "--requests", "10",
                 "--intra-op-threads", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "server --intra-op-threads=1)" in printed.splitlines()[0]  # handed to the server it started
    for row in ("in process batch 1", "HTTP direct, 1 client", "HTTP direct, 4 clients", "HTTP batching, 4 clients",
                "HTTP p50 at 1 client / in-process p50", "batching at 4 clients / 1 client throughput"):
        assert row in printed, row
    results = json.loads(out.read_text())
    for label in ("direct_1", "direct_4", "batching_1", "batching_4"):
        assert results["http"][label]["requests"] == int(label[-1]) * 10
        assert results["http"][label]["p50_ms"] <= results["http"][label]["p99_ms"]
    # The server's batches over the measured requests alone (the warm-up is left out).
    one, four = results["http"]["batching_1"]["batches"], results["http"]["batching_4"]["batches"]
    assert one["calls"] == 10 and one["rows_per_call"] == 1.0  # one client: every call holds its one request
    assert four["calls"] * four["rows_per_call"] == 40 and 1.0 <= four["rows_per_call"] <= 4.0
    assert four["call_ms"] > 0 and four["queue_ms"] > 0
    assert "batches at 4 clients:" in printed
