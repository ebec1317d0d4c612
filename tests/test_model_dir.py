"""The model folder contract: versions, staging, publishing, records; no TensorFlow needed."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from tfrs_pipeline.config import PipelineConfig, apply_overrides
from tfrs_pipeline.errors import ModelError
from tfrs_pipeline.model_dir import ModelDir, published_versions


def _fake_version(base, version):
    folder = base / str(version)
    folder.mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"")
    return folder


def test_resolve_picks_the_newest_published_version_and_never_a_partial_one(tmp_path):
    _fake_version(tmp_path, 1)
    _fake_version(tmp_path, 10)
    (tmp_path / "11").mkdir()  # no saved_model.pb: not a model
    (tmp_path / ".12.partial").mkdir()
    (tmp_path / ".12.partial" / "saved_model.pb").write_bytes(b"")
    assert published_versions(tmp_path) == [10, 1]
    resolved = ModelDir.resolve(tmp_path)
    assert resolved.path == tmp_path / "10" and resolved.version == 10 and resolved.name == tmp_path.name
    assert ModelDir.resolve(tmp_path / "1").version == 1


def test_resolve_names_the_folder_when_there_is_no_model(tmp_path):
    with pytest.raises(ModelError, match="no exported model"):
        ModelDir.resolve(tmp_path / "nothing-here")


def test_create_stages_then_publish_renames(tmp_path):
    _fake_version(tmp_path, 3)
    staging = ModelDir.create(tmp_path)
    assert staging.path == tmp_path / ".4.partial" and staging.version == 4
    assert ModelDir.resolve(tmp_path).version == 3  # unpublished: not served
    (staging.path / "saved_model.pb").write_bytes(b"")
    staging.stage("index").mkdir(parents=True)
    (staging.stage("index") / "saved_model.pb").write_bytes(b"")
    assert staging.stage("index") == tmp_path / "stages" / "index" / ".4.partial"  # staged beside, unpublished
    published = staging.publish()
    assert published.path == tmp_path / "4" and not (tmp_path / ".4.partial").exists()
    assert ModelDir.resolve(tmp_path).version == 4
    # Each stage published with its version, a model base in TensorFlow Serving's layout.
    assert published.stage("index") == tmp_path / "stages" / "index" / "4" and published.stage("index").is_dir()
    assert not (tmp_path / "stages" / "index" / ".4.partial").exists()


def test_concurrent_runs_claim_distinct_versions(tmp_path):
    claimed = []
    barrier = threading.Barrier(8)

    def claim():
        barrier.wait()
        claimed.append(ModelDir.create(tmp_path).version)

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(claimed) == list(range(1, 9))


def test_discard_removes_only_an_unpublished_folder(tmp_path):
    staging = ModelDir.create(tmp_path)
    (staging.path / "partial-file").write_text("x")
    staging.stage("ranking").mkdir(parents=True)
    staging.logs("retrieval").mkdir(parents=True)
    staging.discard()
    assert not staging.path.exists() and not any(tmp_path.iterdir())  # its stages and logs too
    published = ModelDir.create(tmp_path).publish()
    published.discard()
    assert published.path.is_dir()


def test_records_round_trip(tmp_path):
    model_dir = ModelDir.create(tmp_path)
    config = apply_overrides(PipelineConfig(), {"retrieval.embedding_dim": 48})
    model_dir.write_config(config)
    assert model_dir.read_config().retrieval.embedding_dim == 48
    model_dir.write_vocabularies({"user_ids": ["1", "0042"], "movie_ids": []})
    assert model_dir.read_vocabulary("user_ids") == ["1", "0042"] and model_dir.read_vocabulary("movie_ids") == []
    with pytest.raises(ModelError, match="no vocabulary 'genres'"):
        model_dir.read_vocabulary("genres")
    model_dir.write_metrics({"ranking": {"rmse": 0.9}})
    assert model_dir.read_metrics() == {"ranking": {"rmse": 0.9}}
    (model_dir.path / "history.json").write_text("{not json")
    with pytest.raises(ModelError, match="history.json: not valid JSON"):
        model_dir.read_history()
    # Beside the version, a model base per stage; inside it for versions exported before that.
    assert model_dir.stage("ranking") == model_dir.base / "stages" / "ranking" / model_dir.path.name
    (model_dir.path / "stages" / "ranking").mkdir(parents=True)
    assert model_dir.stage("ranking") == model_dir.path / "stages" / "ranking"
    with pytest.raises(ValueError, match="unknown stage"):
        model_dir.stage("towers")


def test_the_model_folder_needs_no_tensorflow():
    code = ("import sys, tfrs_pipeline.model_dir\n"
            "assert 'tensorflow' not in sys.modules and 'tensorflow_recommenders' not in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_manifest_finds_a_changed_or_missing_file(tmp_path):
    staging = ModelDir.create(tmp_path / "m")
    (staging.path / "saved_model.pb").write_bytes(b"graph")
    (staging.path / "variables").mkdir()
    (staging.path / "variables" / "variables.index").write_bytes(b"index")
    staging.write_manifest()
    published = staging.publish()
    published.verify()  # intact
    manifest = (published.path / "MANIFEST.sha256").read_text().splitlines()
    assert [line.split("  ")[1] for line in manifest] == ["saved_model.pb", "variables/variables.index"]
    (published.path / "variables" / "variables.index").write_bytes(b"indeX")
    with pytest.raises(ModelError, match=r"variables/variables.index is damaged \(its SHA-256 differs"):
        published.verify()
    (published.path / "variables" / "variables.index").unlink()
    with pytest.raises(ModelError, match="variables/variables.index is missing"):
        published.verify()
