"""The ``tfrs-pipeline`` command line.

Every error a user can cause ends in one line on stderr and exit code 2; a bug still
shows its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import tfrs_pipeline  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from tfrs_pipeline.config import DataConfig, PipelineConfig, apply_overrides, load_toml
from tfrs_pipeline.errors import PipelineError


def _add_data_options(parser: argparse.ArgumentParser, required: bool = False) -> None:
    group = parser.add_argument_group("data")
    group.add_argument("--data", required=required, help="synthetic[:SIZE], movielens:PATH, tfds:NAME or csv:PATH")
    group.add_argument("--on-bad-rows", choices=("error", "skip"), help="stop at the first bad row, or drop and count")
    group.add_argument("--tfds-data-dir", help="folder with prepared TFDS data")
    group.add_argument("--user-col", dest="csv_user_column", help="csv: user id column (default user_id)")
    group.add_argument("--item-col", dest="csv_item_column", help="csv: item id column (default item_id)")
    group.add_argument("--rating-col", dest="csv_rating_column", help="csv: rating column (default rating)")
    group.add_argument("--timestamp-col", dest="csv_timestamp_column", help="csv: timestamp column (default timestamp)")
    group.add_argument("--items", dest="csv_items_path", help="csv: items file with id and title columns")
    group.add_argument("--title-col", dest="csv_title_column", help="csv: title column of the items file")
    group.add_argument("--rating-scale", help="csv: lowest,highest rating (default 0.5,5)")


def _data_overrides(args: argparse.Namespace) -> dict[str, object]:
    overrides: dict[str, object] = {}
    for key in ("on_bad_rows", "tfds_data_dir", "csv_user_column", "csv_item_column", "csv_rating_column",
                "csv_timestamp_column", "csv_items_path", "csv_title_column", "rating_scale"):
        value = getattr(args, key, None)
        if value is not None:
            overrides[f"data.{key}"] = value
    if getattr(args, "data", None):
        overrides["data.source"] = args.data
    return overrides


def _data_config(args: argparse.Namespace) -> DataConfig:
    return apply_overrides(PipelineConfig(), _data_overrides(args)).validate().data


def _cmd_data_describe(args: argparse.Namespace) -> int:
    from tfrs_pipeline.data import load_data
    from tfrs_pipeline.data.describe import describe

    config = _data_config(args)
    data = load_data(config.source, config)
    print(describe(data, top=args.top))
    if args.split:
        from tfrs_pipeline.split import split_ratings

        split_config = apply_overrides(PipelineConfig(), {"split.kind": args.split}).split
        print(split_ratings(data, split_config).describe())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tfrs-pipeline",
        description="Two-stage movie recommender on TensorFlow Recommenders: data, training, export, serving.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = commands.add_parser("data", help="inspect a data source")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    describe = data_commands.add_parser("describe", help="counts, sparsity, rating histogram, validation report")
    _add_data_options(describe)
    describe.add_argument("--top", type=int, default=10, help="most-rated movies to list")
    describe.add_argument("--split", choices=("random", "temporal", "leave-last-out"),
                          help="also report a split's sizes and cold-start counts")
    describe.set_defaults(handler=_cmd_data_describe)

    return parser


def load_config(config_path: str | None, overrides: dict[str, object]) -> PipelineConfig:
    """The default configuration, updated from a TOML file and then from options."""
    base = load_toml(config_path) if config_path else PipelineConfig()
    return apply_overrides(base, overrides).validate()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except PipelineError as error:
        print(f"tfrs-pipeline: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tfrs-pipeline: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
