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
    assert set(row["phases"]) == {"data", "retrieval", "rating", "list_ranker", "retrieval_refit", "whole_training_side",
                                 "export", "evaluation"}
    peaks = [row["phases"][p]["peak_rss_mib"] for p in ("data", "retrieval", "rating", "export", "evaluation")]
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
    # Heavy valid requests beside light ones: none of the valid ones fails, and one past --max-answer is a 400.
    heavy = results["heavy_mix"]
    assert heavy["valid_failed"] == 0 and heavy["oversized_status"] == 400
    assert heavy["light_answered"] + heavy["heavy_answered"] == 4 * 10 and "0 valid requests failed" in printed
    assert "batches at 4 clients:" in printed


@pytest.mark.slow
def test_the_gpu_check_runs_whole_on_the_cpu_and_prints_every_figure(tmp_path, capsys):
    out = tmp_path / "gpu.json"
    assert main(["benchmark", "gpu", "--sizes", "60x50x1500", "--epochs", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    results = json.loads(out.read_text())
    rows = results["sizes"]["60x50x1500"]
    assert list(rows) == ["cpu float32", "default", "mixed precision", "mirrored"]
    for name, row in rows.items():
        assert row["retrieval_examples_per_second"] > 0 and row["rating_examples_per_second"] > 0, name
        assert row["reload_seconds"] > 0 and row["gpu_peak_mib"] == {} and "CPU only" in row["devices"], name
        assert set(row["figures"]) == {"retrieval recall@10", "retrieval NDCG@10", "two-stage recall@10",
                                       "two-stage NDCG@10"}
    # the same seed on the same device: the default run reproduces the CPU reference
    assert rows["default"]["figures"] == rows["cpu float32"]["figures"]
    assert results["placement"]["CPU"] > 0 and results["placement"]["GPU"] == 0
    assert "GPU check (1 epochs a stage)" in printed and "default against cpu float32" in printed
    assert "GPUs: none" in printed and "matrix multiplications on a GPU" in printed


def test_the_gpu_check_fails_on_cpu_placement_or_figures_out_of_tolerance():
    from tfrs_pipeline.benchmarks.gpu import _failures

    def rows(mixed: float) -> dict:
        figures = {"retrieval recall@10": 0.1, "two-stage NDCG@10": 0.3}
        return {"default": {"figures": figures}, "mirrored": {"figures": figures},
                "mixed precision": {"figures": {**figures, "two-stage NDCG@10": mixed}}}

    good = {"placement": {"GPU": 12, "CPU": 3}, "tolerance": 0.005, "sizes": {"100k": rows(0.303)}}
    assert _failures(good, has_gpu=True) == []
    on_cpu = {**good, "placement": {"GPU": 0, "CPU": 15}}
    assert _failures(on_cpu, has_gpu=True) == ["a GPU is listed, but no matrix multiplication of the retrieval "
                                               "epoch ran on it"]
    drifted = {**good, "sizes": {"100k": rows(0.31)}}
    assert _failures(drifted, has_gpu=True) == ["synthetic:100k, mixed precision: two-stage NDCG@10 0.3100 against "
                                                "0.3000 with the default strategy (tolerance 0.005)"]
    assert _failures(drifted, has_gpu=False) == []  # on a CPU there is no GPU path to hold to it


def test_the_visitor_bound_scores_each_test_users_5_movies_with_the_generators_own_model(tmp_path, capsys):
    out = tmp_path / "bound.json"
    assert main(["benchmark", "visitor-bound", "--data", "synthetic:400x150x12000", "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    printed = capsys.readouterr().out
    assert "the generator's model from those 5 movies" in printed and "x most popular" in printed
    popular, from_5, knowing = (results[name]["ndcg_at_10"] for name in
                                ("most_popular_minus_5", "generator_from_5", "generator_knowing_the_user"))
    # The truth recommends better than popularity, and better still knowing the whole user than 5 of their movies.
    assert popular < from_5 < knowing
    assert results["users"] > 300


def test_the_visitor_bound_refuses_data_without_a_generator(capsys):
    assert main(["benchmark", "visitor-bound", "--data", "csv:ratings.csv"]) != 0
    assert "visitor-bound needs --data synthetic:SIZE" in capsys.readouterr().err
