"""``tfrs-pipeline data``: fetch MovieLens (``download``) and inspect a data source (``describe``)."""

from __future__ import annotations

import argparse
import sys

from tfrs_pipeline.cli.options import Parser, add_data_options, data_config, positive
from tfrs_pipeline.config import CHOICES, PipelineConfig, apply_overrides


def add_commands(commands) -> None:
    """``data download`` and ``data describe``."""
    data = commands.add_parser("data", help="fetch MovieLens, or inspect a data source")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND", parser_class=Parser)
    from tfrs_pipeline.data.download import ARCHIVES, GROUPLENS_URL

    download = data_commands.add_parser(
        "download", help="fetch a MovieLens archive from GroupLens, check its published MD5, unpack it into a cache",
        description="Fetches NAME.zip from GroupLens, checks it against the MD5 published beside it, unpacks it "
                    "into the cache (~/.cache/tfrs-pipeline, or $TFRS_PIPELINE_CACHE) and prints the --data to use. "
                    "Archives: " + "; ".join(f"{name}: {what}" for name, what in ARCHIVES.items()) + ".")
    download.add_argument("name", choices=list(ARCHIVES), metavar="NAME", help=f"one of {', '.join(ARCHIVES)}")
    download.add_argument("--cache-dir", help="unpack into DIR/NAME (default: ~/.cache/tfrs-pipeline, or "
                                              "$TFRS_PIPELINE_CACHE)")
    download.add_argument("--base-url", default=GROUPLENS_URL, help=f"where NAME.zip and NAME.zip.md5 are (default "
                                                                    f"{GROUPLENS_URL})")
    download.add_argument("--force", action="store_true",
                          help="fetch again when the cache holds it already (default: the cached copy is kept)")
    download.set_defaults(handler=_cmd_data_download)
    describe = data_commands.add_parser("describe", help="counts, sparsity, rating histogram, validation report")
    add_data_options(describe)
    describe.add_argument("--top", type=positive, default=10, help="most-rated movies to list (default 10)")
    describe.add_argument("--split", choices=CHOICES["split.kind"],
                          help="also report a split's sizes and cold-start counts (default: no split)")
    describe.set_defaults(handler=_cmd_data_describe)


def _cmd_data_download(args: argparse.Namespace) -> int:
    from tfrs_pipeline.data.download import download_movielens

    folder = download_movielens(args.name, args.cache_dir, base_url=args.base_url, force=args.force,
                                log=lambda line: print(line, file=sys.stderr))
    print(f"--data movielens:{args.name if args.cache_dir is None else folder}")
    return 0


def _cmd_data_describe(args: argparse.Namespace) -> int:
    from tfrs_pipeline.data import load_data
    from tfrs_pipeline.data.describe import describe

    config = data_config(args)
    data = load_data(config.source, config)
    print(describe(data, top=args.top))
    if args.split:
        from tfrs_pipeline.data.split import split_ratings

        split_config = apply_overrides(PipelineConfig(), {"split.kind": args.split}).split
        print(split_ratings(data, split_config).describe())
    return 0

