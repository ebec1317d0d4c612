"""The ``tfrs-pipeline`` command line.

Every error a user can cause ends in one line on stderr and exit code 2; a bug still
shows its traceback. One module per group of commands, each adding its parsers and holding
their handlers: :mod:`~tfrs_pipeline.cli.data` (``data``), :mod:`~tfrs_pipeline.cli.models`
(``train``, ``evaluate``, ``recommend``, ``similar``, ``demo``), :mod:`~tfrs_pipeline.cli.benchmark`
and :mod:`~tfrs_pipeline.cli.serve`; :mod:`~tfrs_pipeline.cli.options` holds what they share (the
options generated from the settings' declarations in :mod:`~tfrs_pipeline.config`, the argparse
types).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence

import tfrs_pipeline  # noqa: F401  (selects Keras 2; imports no TensorFlow)
from tfrs_pipeline.cli import benchmark, data, models, serve
from tfrs_pipeline.cli.options import Parser, load_config, training_overrides
from tfrs_pipeline.errors import CappedWarning, PipelineError

__all__ = ["build_parser", "load_config", "main", "training_overrides"]


def _import_tensorflow_quietly() -> None:
    """Imports TensorFlow without its start-up log lines on stderr.

    On machines without a GPU TensorFlow's C++ side logs a CUDA error at start, and from 2.21
    it writes its start-up lines to stderr before its log settings apply, whatever
    TF_CPP_MIN_LOG_LEVEL says; a command line whose errors are one line should not. Set
    TF_CPP_MIN_LOG_LEVEL yourself to see them. (The package itself, this module's parent,
    is imported first and has already selected Keras 2.)
    """
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ or "tensorflow" in sys.modules:
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow  # noqa: F401  (an error raised here is shown once stderr is back)
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def build_parser() -> argparse.ArgumentParser:
    """Every command's parser, as ``tfrs-pipeline --help`` lists them."""
    parser = Parser(
        prog="tfrs-pipeline",
        description="Two-stage movie recommender on TensorFlow Recommenders: data, training, export, serving.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    for group in (data, models, benchmark, serve):
        group.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one command line; returns its exit code (2: a user error, told in one line on stderr)."""
    parser = build_parser()
    args = parser.parse_args(argv)  # --help and usage errors answer before TensorFlow is imported
    warnings.filterwarnings("ignore", category=CappedWarning)  # the commands say so in their own note
    _import_tensorflow_quietly()
    if args.command != "data":
        import tensorflow as tf

        tf.get_logger().setLevel("ERROR")  # Keras' notes on subclassed models are not for users
    try:
        return int(args.handler(args) or 0)
    except PipelineError as error:
        print(f"tfrs-pipeline: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tfrs-pipeline: interrupted", file=sys.stderr)
        return 130

