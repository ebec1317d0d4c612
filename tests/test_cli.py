"""The tfrs-pipeline command line: every command a user types, and its errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tfrs_pipeline.cli import main


@pytest.mark.slow
def test_train_prints_configuration_then_metrics_and_publishes_the_next_version(trained, tmp_path, capsys):
    out = tmp_path / "models" / "cli"
    shutil.copytree(trained.path, out / "1")  # a version trained before: the run publishes 2 and keeps 1
    # 50 movies: fewer than the 100 candidates the retrieval stage hands the ranker.
    args = ["train", "--data", "synthetic:200x50x2000", "--out", str(out), "--epochs", "1", "--verbose", "2",
            "--set", "retrieval.batch_size=512", "--set", "rating.batch_size=512", "--set", "ranker.epochs=2"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert printed.index("[retrieval]") < printed.index("retrieval epoch 1/1: loss") < printed.index("rating model RMSE")
    assert "rating model epoch 1/1: root_mean_squared_error" in printed and "examples/s" in printed
    assert "batch_size = 512" in printed and "most-popular" in printed
    assert "list ranker: item-item model served: EASE over the 50 rated movies" in printed
    assert "all 2,450 of EASE's weights, as a dense matrix, kept" in printed  # 50 x 49: none dropped
    assert f"model folder {out / '2'}: " in printed and "MiB" in printed
    assert "serving.num_candidates 100 is capped at the catalog's 50 movies" in printed
    assert (out / "2" / "saved_model.pb").is_file() and (out / "1" / "saved_model.pb").is_file()
    # TensorBoard logs beside the version, not in the folder a server loads.
    assert (out / "logs" / "2" / "retrieval").is_dir() and not (out / "2" / "logs").exists()
    assert sorted(p.name for p in out.iterdir()) == ["1", "2", "logs", "stages"]  # nothing half-written left
    metrics = json.loads((out / "2" / "metrics.json").read_text())
    assert metrics["factorized_top_k"]["top_100"] == metrics["factorized_top_k"]["top_50"] > 0.99


def test_evaluate_json_reuses_the_recorded_split_and_the_recorded_item_item_model(trained, tmp_path, capsys):
    from tfrs_pipeline.model_dir import ModelDir

    # A version whose list ranker kept the session kernel (the demo data's random timestamps never
    # do): metrics.json records the kernel's settings, and evaluate adds EASE with them.
    version = tmp_path / "kernel" / "1"
    shutil.copytree(trained.path, version)
    shutil.copytree(trained.path.parent / "stages", version.parent / "stages")
    recorded = json.loads((version / "metrics.json").read_text())
    assert recorded["training"]["item_item"]["sessions"] is None
    recorded["training"]["item_item"]["sessions"] = {"weight": 0.6, "minutes": 5.0, "regularization": 100.0}
    (version / "metrics.json").write_text(json.dumps(recorded))
    ModelDir(version).write_manifest()
    assert main(["evaluate", "--model", str(version.parent), "--format", "json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    for key in ("factorized_top_k", "excluding_seen", "pipeline"):
        for name, value in recorded[key].items():
            assert metrics[key][name] == pytest.approx(value, abs=1e-6), (key, name)
    assert metrics["rating"]["rmse"] == pytest.approx(recorded["rating"]["rmse"], abs=1e-6)
    assert sorted(metrics["ablation"]) == sorted([*recorded["ablation"], "EASE with sessions (item-item source)"])


def test_recommend_prints_titles_and_predicted_ratings(trained, capsys):
    assert main(["recommend", "--model", str(trained.path.parent), "--user", "5", "--k", "4"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("top 4 for user 5 (seen movies excluded)") and len(lines) == 2 + 4
    assert main(["recommend", "--model", str(trained.path), "--user", "5", "--include-seen"]) == 0
    assert "seen movies included" in capsys.readouterr().out
    first = lines[2].split()[4]  # the user goes on to rate their first recommendation
    assert main(["recommend", "--model", str(trained.path), "--user", "5", "--k", "4", "--history", first]) == 0
    out = capsys.readouterr().out
    assert out.startswith("top 4 for user 5, with 1 movie(s) rated since training") and f" {first} " not in out
    assert main(["recommend", "--model", str(trained.path), "--history", first, "--k", "4"]) == 0
    assert capsys.readouterr().out.startswith(f"top 4 for a visitor who rated 1 known movie(s) ({first})")


def test_similar_finds_a_movie_by_title(trained, capsys):
    from tfrs_pipeline.data import load_data

    title = load_data("synthetic:300x200x8000").movies.set_index("movie_id").loc["7", "title"]
    assert main(["similar", "--model", str(trained.path.parent), "--movie", title, "--k", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"movies similar to {title} (id 7):") and len(out.strip().splitlines()) == 4


USER_ERRORS = [
    (["recommend", "--model", "MODEL", "--user", "no-such-user"], "not in the model's training data"),
    (["similar", "--model", "MODEL", "--movie", "zzz-no-such-title"], "no movie with id or title"),
    (["recommend", "--model", "/no/such/model", "--user", "1"], "no exported model"),
    (["train", "--data", "synthetic:100k", "--out", "x", "--set", "retrieval.epochs=lots"], "retrieval.epochs must be"),
    (["evaluate", "--model", "MODEL", "--format", "yaml"], "invalid choice: 'yaml'"),
    (["train", "--data", "synthetic:100k", "--out", "x", "--set", "retrieval.learning_rate=nan"],
     "retrieval.learning_rate must be a number in (0, 1000], got nan"),
    (["recommend", "--model", "MODEL", "--user", "1", "--k", "0"], "expected a positive integer"),
    (["train", "--data", "synthetic:100k", "--out", "x", "--ranking-epochs", "3"], "--ranking-epochs is now --rating-epochs"),
    (["train", "--data", "synthetic:100k", "--out", "x", "--set", "ranking.list_epochs=3"],
     "ranking.list_epochs is now ranker.epochs"),
]


@pytest.mark.parametrize("args,message", USER_ERRORS)
def test_user_errors_are_one_line_with_exit_code_2(trained, capsys, args, message):
    args = [str(trained.path.parent) if a == "MODEL" else a for a in args]
    try:
        code = main(args)
    except SystemExit as stopped:  # a usage error: argparse exits with the code
        code = stopped.code
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and message in err


@pytest.mark.slow
@pytest.mark.parametrize("args,message", [USER_ERRORS[0], USER_ERRORS[3]], ids=["after-tensorflow", "before"])
def test_in_a_users_shell_the_error_is_the_only_line_on_stderr(trained, args, message):
    """TensorFlow's own start-up lines (CUDA probes, CPU notes) must not reach the user either."""
    args = [str(trained.path.parent) if a == "MODEL" else a for a in args]
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as in a user's shell
    result = subprocess.run([sys.executable, "-m", "tfrs_pipeline.cli", *args], capture_output=True, text=True,
                            timeout=300, env=env)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr


@pytest.mark.slow
def test_demo_quick_trains_exports_and_shows_recommendations(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "beside most-popular" in out and "rated highest | recommended" in out and "movies similar to" in out
    assert (tmp_path / "demo" / "1" / "saved_model.pb").is_file()


def test_recommend_explain_names_the_rated_movies_behind_each_recommendation(trained, capsys):
    assert main(["recommend", "--model", str(trained.path.parent), "--user", "4", "--k", "3", "--explain"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[1].split()[:4] == ["#", "ranker", "score", "predicted"]
    assert lines[5].startswith("because the user rated") and len(lines) == 2 + 3 + 1 + 3
    assert any("%)" in line for line in lines[6:])


@pytest.mark.slow
def test_benchmark_two_stage_prints_the_ablation_of_each_seed_and_their_mean(capsys, tmp_path):
    args = ["benchmark", "two-stage", "--data", "synthetic:200x120x4000", "--set", "retrieval.epochs=1",
            "--set", "rating.epochs=1", "--set", "ranker.epochs=2", "--set", "retrieval.batch_size=512",
            "--set", "runtime.verbose=0", "--seeds", "2", "--out", str(tmp_path / "two-stage.json")]
    assert main(args) == 0
    out = capsys.readouterr().out
    runs, summary_text = out.split("training seeds 7, 8: mean +- standard deviation")
    for system in ("retrieval alone", "two-stage, rating blend", "two-stage, as served", "most popular", "EASE"):
        assert runs.count(f"  {system}  ") == 2 and f"  {system}  " in summary_text  # each run's table, then the summary
    assert "two-stage / retrieval alone: NDCG@10" in runs and "rating model RMSE" in runs
    assert "two-stage / EASE NDCG@10" in summary_text and "RMSE: rating model" in summary_text
    results = json.loads((tmp_path / "two-stage.json").read_text())
    assert results["seeds"] == [7, 8]
    served = [run["ablation"]["two-stage, as served"]["ndcg_at_10"] for run in results["runs"]]
    summary = results["summary"]["ablation"]["two-stage, as served"]["ndcg_at_10"]
    assert summary["mean"] == pytest.approx(sum(served) / 2) and summary["min"] == min(served)
    assert f"{summary['mean']:.4f} +- {summary['std']:.4f}" in summary_text


def test_a_failed_run_leaves_no_half_written_version(tmp_path, capsys):
    out = tmp_path / "models"
    assert main(["train", "--data", f"csv:{tmp_path / 'missing.csv'}", "--out", str(out)]) == 2
    assert "missing.csv" in capsys.readouterr().err
    assert list(out.iterdir()) == []


@pytest.mark.slow
def test_a_run_whose_loss_becomes_nan_stops_and_publishes_nothing(tmp_path, capsys):
    out = tmp_path / "diverged"
    args = ["train", "--data", "synthetic:200x120x4000", "--out", str(out), "--epochs", "2", "--verbose", "0",
            "--set", "rating.learning_rate=1000", "--set", "retrieval.batch_size=512"]
    assert main(args) == 2
    error = capsys.readouterr().err
    assert "rating model training stopped: the loss became nan in epoch" in error and "Nothing was published" in error
    assert "lower rating.learning_rate" in error  # the setting to change, as --set spells it
    assert list(out.iterdir()) == []


def test_every_option_of_every_command_says_its_default():
    import argparse

    from tfrs_pipeline.cli import build_parser

    def parsers(parser):
        yield parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for child in action.choices.values():
                    yield from parsers(child)

    missing = []
    for parser in parsers(build_parser()):
        for action in parser._actions:
            if not action.option_strings or action.help == argparse.SUPPRESS or "--help" in action.option_strings:
                continue
            if not action.help or not any(word in action.help for word in ("default", "required")):
                missing.append(f"{parser.prog} {action.option_strings[0]}")
    assert not missing, missing


def test_help_and_usage_errors_answer_without_importing_tensorflow():
    code = """
import contextlib, io, sys
from tfrs_pipeline.cli import main
for argv in (["--help"], ["recommend", "--help"], ["train", "--ranking-epochs", "3"], ["serve", "--port", "x"]):
    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        main(argv)
assert "tensorflow" not in sys.modules, "TensorFlow was imported"
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_benchmark_item_item_prints_the_tables_seconds_and_peak_memory(capsys, tmp_path):
    out = tmp_path / "item-item.json"
    assert main(["benchmark", "item-item", "--data", "synthetic:60x40x800", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    row = json.loads(out.read_text())["item_item"][0]
    assert row["kind"] == "ease" and row["movies"] == 40 and row["peak_mib"] >= row["peak_mib_before_table"] > 0
    assert f"{row['model']}: {row['seconds']:.1f} s, peak" in printed
