"""``--backup-dir``: a run that crashed, started again with the same command, resumes instead of starting over."""

from __future__ import annotations

import pytest
from conftest import TINY

import tfrs_pipeline.pipeline as pipeline_module
from tfrs_pipeline.config import PipelineConfig, apply_overrides
from tfrs_pipeline.errors import ConfigError
from tfrs_pipeline.pipeline import run_training
from tfrs_pipeline.training import loop as training_loop


class Crash(RuntimeError):
    """Stands in for the machine going away."""


def _stages_trained(monkeypatch) -> list[tuple[str, int]]:
    """Records (stage, epoch) for every epoch a stage trains in this process."""
    trained = []

    class Recording(training_loop.Progress):
        def on_epoch_end(self, epoch, logs=None):
            trained.append((self.stage, epoch + 1))
            super().on_epoch_end(epoch, logs)

    monkeypatch.setattr(training_loop, "Progress", Recording)
    return trained


@pytest.mark.slow
def test_a_run_that_crashed_after_retrieval_resumes_with_its_weights_and_ends_as_an_uninterrupted_run(
        trained, tmp_path, monkeypatch):
    config = apply_overrides(PipelineConfig(), {**TINY, "runtime.backup_dir": str(tmp_path / "backup")})
    epochs = _stages_trained(monkeypatch)

    def crash(*args, **kwargs):
        raise Crash("the machine went away while ranking")

    with monkeypatch.context() as patch:
        patch.setattr(pipeline_module, "train_rating_model", crash)
        with pytest.raises(Crash):
            run_training(config, tmp_path / "model", log=lambda *_: None)
    assert not (tmp_path / "model").exists() or not any((tmp_path / "model").iterdir())  # nothing published
    assert (tmp_path / "backup" / "retrieval" / "finished.json").exists()
    assert [stage for stage, _ in epochs] == ["retrieval", "retrieval"]

    epochs.clear()
    resumed = run_training(config, tmp_path / "model", log=lambda *_: None)
    assert "retrieval" not in {stage for stage, _ in epochs}  # restored, not trained again
    assert {"rating model", "list ranking", "retrieval refit"} <= {stage for stage, _ in epochs}
    # The restored towers are the trained ones: every figure equals the uninterrupted run's.
    for part in ("factorized_top_k", "excluding_seen", "pipeline", "rating"):
        assert resumed.metrics[part] == trained.metrics[part], part
    assert not (tmp_path / "backup").exists()  # published: nothing is left to resume


@pytest.mark.slow
def test_a_stage_that_crashed_mid_way_resumes_from_its_last_finished_epoch(tmp_path, monkeypatch):
    overrides = {**TINY, "retrieval.epochs": 3, "ranker.enabled": False, "rating.epochs": 1,
                 "runtime.backup_dir": str(tmp_path / "backup")}
    config = apply_overrides(PipelineConfig(), overrides)
    epochs = _stages_trained(monkeypatch)
    original = training_loop.Progress.on_epoch_end

    def crash_after_the_first_epoch(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch == 0:
            raise Crash("the machine went away after retrieval's first epoch")

    with monkeypatch.context() as patch:
        patch.setattr(training_loop.Progress, "on_epoch_end", crash_after_the_first_epoch)
        with pytest.raises(Crash):
            run_training(config, tmp_path / "model", log=lambda *_: None)
    assert epochs == [("retrieval", 1)]

    epochs.clear()
    resumed = run_training(config, tmp_path / "model", log=lambda *_: None)
    # Epochs 2 and 3 only (early stopping may end it after either), numbered as in one run.
    assert [pair for pair in epochs if pair[0] == "retrieval"][0] == ("retrieval", 2)
    assert resumed.path.exists() and resumed.metrics["excluding_seen"]["hit_rate_at_10"] > 0


def test_a_backup_of_another_configuration_is_refused_not_resumed(tmp_path):
    folder = tmp_path / "backup"
    first = apply_overrides(PipelineConfig(), {**TINY, "runtime.backup_dir": str(folder)})
    assert pipeline_module._claim_backup(first, writer=True, log=lambda *_: None) == folder
    # Verbosity is not part of what is backed up; the seed is.
    again = apply_overrides(first, {"runtime.verbose": 2})
    assert pipeline_module._claim_backup(again, writer=True, log=lambda *_: None) == folder
    other = apply_overrides(first, {"runtime.seed": 8})
    with pytest.raises(ConfigError, match="another configuration"):
        pipeline_module._claim_backup(other, writer=True, log=lambda *_: None)


def test_a_rating_model_backup_made_under_its_former_name_is_resumed(tmp_path):
    from tfrs_pipeline.training.backup import StageBackup

    (tmp_path / "ranking" / "epochs").mkdir(parents=True)  # what the previous release wrote for the rating model
    (tmp_path / "ranking" / "finished.json").write_text("{}")
    backup = StageBackup(tmp_path, "rating", formerly="ranking")
    assert backup.folder == tmp_path / "rating" and (tmp_path / "rating" / "finished.json").exists()
    assert not (tmp_path / "ranking").exists()
