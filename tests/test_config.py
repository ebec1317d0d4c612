"""Configuration: TOML round trip, overrides, and errors that name the key."""

from __future__ import annotations

import re

import pytest

from tfrs_pipeline.config import PipelineConfig, apply_overrides, load_toml, to_toml
from tfrs_pipeline.errors import ConfigError


def test_toml_round_trip_keeps_every_value(tmp_path):
    config = apply_overrides(PipelineConfig(), {"retrieval.epochs": 3, "rating.hidden_units": "16,8",
                                                "split.kind": "temporal", "data.source": 'csv:"odd".csv'})
    path = tmp_path / "config.toml"
    path.write_text(to_toml(config))
    assert load_toml(path) == config


@pytest.mark.parametrize("overrides,message", [
    ({"retrieval.epochs": "many"}, "retrieval.epochs must be of type int, got 'many'"),
    ({"retrieval.nope": 1}, "unknown configuration key 'retrieval.nope'"),
    ({"split.kind": "sideways"}, "split.kind must be one of random, temporal, leave-last-out; got 'sideways'"),
    ({"split.test_fraction": 1.5}, "split.test_fraction must be a number in (0, 1), got 1.5"),
    ({"rating.learning_rate": "inf"}, "rating.learning_rate must be a number in (0, 1000], got inf"),
    ({"ranker.learning_rate": 0}, "ranker.learning_rate must be a number in (0, 1000], got 0.0"),
    ({"ranker.ease_regularization": -5}, "ranker.ease_regularization must be a number in (0, 1e+09], got -5.0"),
    ({"retrieval.embedding_dim": 10**8}, "retrieval.embedding_dim must be a whole number from 1 to 4,096, got 100000000"),
    ({"retrieval.embedding_dim": "99999999999999999999"}, "retrieval.embedding_dim must be a whole number from 1 to 4,096"),
    ({"rating.hidden_units": "-5"}, "rating.hidden_units must be a list of whole numbers from 1 to 65,536, got [-5]"),
    ({"retrieval.history_dropout": 2}, "retrieval.history_dropout must be a number in [0, 1), got 2.0"),
    ({"rating.dropout": "nan"}, "rating.dropout must be a number in [0, 1), got nan"),
    ({"runtime.verbose": 7}, "runtime.verbose must be one of -1, 0, 1, 2; got 7"),
    ({"data.encoding": "klingon"}, "data.encoding 'klingon' is not a text encoding Python knows"),
    ({"ranker.item_model": "svd"}, "ranker.item_model must be one of auto, ease, cosine; got 'svd'"),
])
def test_bad_values_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        apply_overrides(PipelineConfig(), overrides).validate()


def test_bad_toml_file_is_named(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[retrieval]\nepochs = 'x'\n")
    with pytest.raises(ConfigError, match="bad.toml: retrieval.epochs"):
        load_toml(path)


@pytest.mark.parametrize("text,expected", [
    ("0-10", [0.0, 10.0]), ("1-5", [1.0, 5.0]), ("0.5-5", [0.5, 5.0]), ("-10-10", [-10.0, 10.0]),
    ("-10--1", [-10.0, -1.0]), ("0.5,5", [0.5, 5.0]), ("1..5", [1.0, 5.0]), ("", []), ([1, 5], [1.0, 5.0]),
])
def test_rating_scale_takes_any_range(text, expected):
    config = apply_overrides(PipelineConfig(), {"data.rating_scale": text}).validate()
    assert config.data.rating_scale == expected


@pytest.mark.parametrize("text", ["5-1", "3-3", "five", "1-5-9", "nan-5"])
def test_rating_scale_rejects_what_is_not_a_range(text):
    with pytest.raises(ConfigError, match="data.rating_scale must be"):
        apply_overrides(PipelineConfig(), {"data.rating_scale": text}).validate()


def test_each_setting_is_declared_once_and_its_options_come_from_that_declaration():
    import inspect

    from tfrs_pipeline.cli import build_parser
    from tfrs_pipeline.config import CHOICES, INT_RANGES, SETTINGS, python_keywords
    from tfrs_pipeline.data.table_source import CLI_OPTIONS, PYTHON_OPTIONS
    from tfrs_pipeline.pipeline import train

    # train()'s data keywords are exactly the declared ones, each reaching its setting.
    keywords = set(inspect.signature(train).parameters) - {"data", "movies", "out", "config", "settings", "log"}
    assert keywords == set(python_keywords())
    # Every declared command-line option is the train command's option for that setting, with its choices.
    train_parser = build_parser()._subparsers._group_actions[0].choices["train"]
    actions = {option: action for action in train_parser._actions for option in action.option_strings}
    declared = {key: spec for key, spec in SETTINGS.items() if spec.cli}
    assert {"data.csv_user_column", "split.kind", "runtime.verbose"} <= set(declared)
    for key, spec in declared.items():
        assert actions[spec.cli].dest == key and tuple(actions[spec.cli].choices or ()) == spec.choices, key
    # Messages name options as the declarations spell them.
    assert CLI_OPTIONS["user"] == SETTINGS["data.csv_user_column"].cli and PYTHON_OPTIONS["user"] == "user_col="
    # Ranges and choices are read from the same declarations: a new range needs no second entry anywhere.
    assert INT_RANGES["split.seed"] == SETTINGS["split.seed"].whole and CHOICES["split.kind"] == SETTINGS["split.kind"].choices


def test_a_command_line_option_sets_its_setting():
    from tfrs_pipeline.cli import build_parser, training_overrides

    args = build_parser().parse_args(["train", "--out", "m", "--user-col", "customer", "--test-fraction", "0.3",
                                      "--verbose", "--implicit", "--rating-epochs", "4"])
    assert training_overrides(args) == {"data.csv_user_column": "customer", "split.test_fraction": 0.3,
                                         "runtime.verbose": 2, "data.implicit": True, "rating.epochs": 4}
