"""evaluate --report: metrics.json and every plot, from an exported model."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")

from tfrs_pipeline.evaluation.report import write_report  # noqa: E402


def test_write_report_writes_metrics_and_every_plot(trained, tmp_path):
    written = write_report(trained.path, trained.split, trained.metrics, tmp_path / "report", trained.data.rating_scale)
    names = {path.name for path in written}
    assert names == {"metrics.json", "top_k_accuracy.png", "rmse_by_user_activity.png", "coverage_and_popularity.png",
                     "ablation.png", "training_curves.png"}
    for path in written:
        assert path.stat().st_size > 1000, path
    assert json.loads((tmp_path / "report" / "metrics.json").read_text())["ablation"] == trained.metrics["ablation"]
