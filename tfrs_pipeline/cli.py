"""The ``tfrs-pipeline`` command line.

Every error a user can cause ends in one line on stderr and exit code 2; a bug still
shows its traceback.

Longer than 500 lines: every command's options and what it runs, in the order of
``tfrs-pipeline --help``, each handler beside its options (the settings' options are generated
from :mod:`~tfrs_pipeline.config`).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import warnings
from collections.abc import Sequence

import tfrs_pipeline  # noqa: F401  (selects Keras 2; imports no TensorFlow)
from tfrs_pipeline.config import CHOICES, SETTINGS, DataConfig, PipelineConfig, apply_overrides, load_toml, to_dict
from tfrs_pipeline.errors import CappedWarning, ConfigError, ModelError, PipelineError


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




def _add_setting_options(group, keys) -> None:
    """Adds the command-line option of each setting in ``keys``, as its declaration in
    :mod:`~tfrs_pipeline.config` spells it (:data:`~tfrs_pipeline.config.SETTINGS`): its name, choices,
    help, and its type (a whole number, a real number, a flag or text read by the configuration)."""
    defaults = {f"{section}.{key}": value for section, entries in to_dict(PipelineConfig()).items()
                for key, value in entries.items()}
    for key in keys:
        spec = SETTINGS[key]
        options = {"dest": key, "help": spec.help}
        if isinstance(defaults[key], bool):
            options.update(action="store_true", default=None)
        else:
            if spec.choices:
                options["choices"] = spec.choices
            if isinstance(defaults[key], (int, float)):
                options["type"] = type(defaults[key])
            if spec.const is not None:
                options.update(nargs="?", const=spec.const)
            if not spec.choices:  # "--user-col USER_COL", not the dotted key
                options["metavar"] = spec.metavar or spec.cli.lstrip("-").upper().replace("-", "_")
        group.add_argument(spec.cli, **options)


#: The data options every command that reads data takes: each data setting with a command-line option.
DATA_OPTIONS = [key for key, spec in SETTINGS.items() if key.startswith("data.") and spec.cli]
#: The training options of ``train`` and ``benchmark`` besides the data's and the epochs'.
TRAINING_OPTIONS = ["split.kind", "split.test_fraction", "split.seed", "runtime.strategy", "runtime.mixed_precision",
                    "runtime.seed", "runtime.backup_dir", "runtime.verbose"]


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    _add_setting_options(parser.add_argument_group("data (default: the configuration's, else synthetic:100k)"),
                         DATA_OPTIONS)


def _setting_overrides(args: argparse.Namespace) -> dict[str, object]:
    """The settings given on the command line, by dotted key (an option not given is None: not a setting)."""
    return {key: getattr(args, key) for key in SETTINGS if getattr(args, key, None) is not None}


def _data_overrides(args: argparse.Namespace) -> dict[str, object]:
    return {key: value for key, value in _setting_overrides(args).items() if key.startswith("data.")}


def _data_config(args: argparse.Namespace) -> DataConfig:
    return apply_overrides(PipelineConfig(), _data_overrides(args)).validate().data


def _add_data(commands) -> None:
    data = commands.add_parser("data", help="fetch MovieLens, or inspect a data source")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND", parser_class=_Parser)
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
    _add_data_options(describe)
    describe.add_argument("--top", type=_positive, default=10, help="most-rated movies to list (default 10)")
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

    config = _data_config(args)
    data = load_data(config.source, config)
    print(describe(data, top=args.top))
    if args.split:
        from tfrs_pipeline.data.split import split_ratings

        split_config = apply_overrides(PipelineConfig(), {"split.kind": args.split}).split
        print(split_ratings(data, split_config).describe())
    return 0


class _Renamed(argparse.Action):
    """An option that was renamed: using it is a usage error naming the new one."""

    def __init__(self, option_strings, dest, new: str, **kwargs) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(f"{option_string} is now {self.new}")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit code 2), like every other user error.

    Values that start with a minus sign and a digit (``--rating-scale -10-10``, ``--k -3``)
    are read as values, not as unknown options: no option here starts with a digit.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(r"^-\.?\d")

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tfrs-pipeline",
        description="Two-stage movie recommender on TensorFlow Recommenders: data, training, export, serving.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    _add_data(commands)
    _add_train(commands)
    _add_evaluate(commands)
    _add_recommend(commands)
    _add_similar(commands)
    _add_demo(commands)
    _add_benchmark(commands)
    _add_serve(commands)
    return parser


# --- model commands ----------------------------------------------------------------------------


def _training_overrides(args: argparse.Namespace) -> dict[str, object]:
    overrides = _setting_overrides(args)
    for key, value in (("retrieval.epochs", args.retrieval_epochs or args.epochs),
                       ("rating.epochs", args.rating_epochs or args.epochs)):
        if value is not None:
            overrides[key] = value
    for assignment in args.set or []:
        key, sep, value = assignment.partition("=")
        if not sep:
            raise ConfigError(f"--set expects KEY=VALUE (such as retrieval.embedding_dim=64), got {assignment!r}")
        overrides[key.strip()] = value.strip()
    return overrides


def _add_train(commands) -> None:
    train = commands.add_parser("train", help="train both stages, export, evaluate")
    _add_data_options(train)
    defaults = PipelineConfig()
    train.add_argument("--out", required=True,
                       help="saved_models/NAME (required; a new integer version is written in it)")
    train.add_argument("--config", help="TOML configuration file (default: the built-in configuration)")
    train.add_argument("--epochs", type=int,
                       help=f"most epochs for both stages; early stopping may stop sooner (default "
                            f"{defaults.retrieval.epochs} retrieval, {defaults.rating.epochs} rating model)")
    train.add_argument("--retrieval-epochs", type=int,
                       help=f"most retrieval epochs (default {defaults.retrieval.epochs})")
    train.add_argument("--rating-epochs", type=int, help=f"most rating-model epochs (default {defaults.rating.epochs})")
    train.add_argument("--ranking-epochs", action=_Renamed, new="--rating-epochs", help=argparse.SUPPRESS)
    _add_setting_options(train.add_argument_group("split and runtime"), TRAINING_OPTIONS)
    train.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="any configuration key, such as retrieval.embedding_dim=64; repeatable (default: none)")
    train.set_defaults(handler=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    from tfrs_pipeline.evaluation.summary import format_metrics, format_phases
    from tfrs_pipeline.pipeline import run_training

    config = load_config(args.config, _training_overrides(args))
    result = run_training(config, args.out)
    print(format_metrics(result.metrics))
    print(format_phases(result.metrics["training"]))
    print(f"exported: {result.path}")
    return 0


def _add_evaluate(commands) -> None:
    evaluate = commands.add_parser("evaluate", help="metrics of an exported model on its recorded test split")
    evaluate.add_argument("--model", required=True,
                          help="saved_models/NAME (its newest version that loads) or saved_models/NAME/VERSION (required)")
    evaluate.add_argument("--data", help="data source (default: the one recorded at training)")
    evaluate.add_argument("--format", choices=("text", "json"), default="text", help="output format (default text)")
    evaluate.add_argument("--report", metavar="DIR", help="also write metrics.json and PNG plots to DIR (default: none)")
    evaluate.set_defaults(handler=_cmd_evaluate)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import json

    from tfrs_pipeline.evaluation.evaluate import evaluate_export, recorded_sessions
    from tfrs_pipeline.evaluation.summary import format_metrics

    model = _load_model(args.model)
    data, split = model.model_dir.recorded_split(args.data)
    log = (lambda message: print(message, file=sys.stderr)) if args.format == "json" else print
    # The training run's ablation: with EASE with sessions where the ranker's item-item model has the kernel.
    metrics = evaluate_export(model, split.train, split.test, data.rating_scale,
                              sessions=recorded_sessions(model.model_dir), log=log)
    if args.report:
        from tfrs_pipeline.evaluation.report import write_report

        written = write_report(model, split, metrics, args.report, data.rating_scale)
        log(f"report: {', '.join(str(p) for p in written)}")
    print(json.dumps(metrics, indent=2) if args.format == "json" else format_metrics(metrics))
    return 0


def _load_model(path: str):
    """The newest version of ``path`` that loads; a damaged newer version is named on stderr."""
    from tfrs_pipeline.recommender import Recommender

    model = Recommender.load(path)
    for note in model.skipped:
        print(f"tfrs-pipeline: warning: {note}; using version {model.model_dir.version}", file=sys.stderr)
    return model


def _note_cap(asked: int, got: int, limit: str) -> None:
    if got < asked:
        print(f"tfrs-pipeline: note: --k {asked} capped at {got}, the number of {limit}", file=sys.stderr)


def _id_list(text: str, option: str) -> list[str]:
    from tfrs_pipeline.arguments import split_ids

    ids = split_ids(text)
    if not ids:
        raise ConfigError(f"{option} takes movie ids separated by commas, got {text!r}")
    return ids


def _print_ranked(model, out: dict) -> None:
    """The rows of a two-stage answer's first list: rank, ranker score, predicted rating, retrieval score, title."""
    predicted = "relevance" if model.implicit else "predicted"
    # The ranker's score orders the list; it is a score, not a rating (it is not on the rating scale).
    print(f"  {'#':>3}  {'ranker score':>12}  {predicted:>9}  {'retrieval':>9}  {'movie id':>9}  title")
    for rank, (movie, title, ranking_score, rating, score) in enumerate(
            zip(out["movie_ids"][0], out["titles"][0], out["scores"][0], out["predicted_ratings"][0],
                out["retrieval_scores"][0]), 1):
        if movie:  # past the movies there are: empty slots
            print(f"  {rank:>3}  {ranking_score:>12.2f}  {rating:>9.2f}  {score:>9.3f}  {movie:>9}  {title}")


def _recommend_from_history(model, history: list[str], exclude: list[list[str]] | None, k: int) -> int:
    if exclude:
        out = model.recommend([""], k=k, history=[history], exclude=exclude, allow_unknown=True, arrays=True)
    else:
        out = model.recommend_from_history([history], k=k, arrays=True)
    known = int(out["history_known"][0])
    if not known:
        print(f"none of {', '.join(history)} is in the model's catalog: well-rated popular movies")
    print(f"top {out['movie_ids'].shape[1]} for a visitor who rated {known} known movie(s) ({', '.join(history)}):")
    _print_ranked(model, out)
    return 0


def _add_recommend(commands) -> None:
    recommend = commands.add_parser("recommend", help="top movies for a user, with predicted ratings")
    recommend.add_argument("--model", required=True, help="saved_models/NAME or saved_models/NAME/VERSION (required)")
    recommend.add_argument("--user", help="user id as in the training data (one of --user and --history is required)")
    recommend.add_argument("--history", help="movie ids rated since training, comma-separated: with --user, added to "
                                             "what the model knows of the user (no retraining); alone, a visitor "
                                             "unknown to the model (one of --user and --history is required)")
    recommend.add_argument("--exclude", help="movie ids never to recommend, comma-separated (default: none)")
    recommend.add_argument("--k", type=_positive, default=10,
                           help="length of the list, capped at the candidates retrieved (default 10)")
    seen = recommend.add_mutually_exclusive_group()
    seen.add_argument("--exclude-seen", dest="exclude_seen", action="store_true", default=True,
                      help="leave out movies the user rated in training (the default)")
    seen.add_argument("--include-seen", dest="exclude_seen", action="store_false",
                      help="allow movies the user rated in training (default: excluded)")
    recommend.add_argument("--allow-unknown", action="store_true",
                           help="show the popular fallback for a user the model never saw (default: an unknown user is "
                                "an error, as in Python's recommend and GET /recommend)")
    recommend.add_argument("--explain", action="store_true",
                           help="for each movie, the user's rated movies most similar to it, with their shares "
                                "(default: off)")
    recommend.set_defaults(handler=_cmd_recommend)


def _cmd_recommend(args: argparse.Namespace) -> int:
    if args.user is None and args.history is None:
        raise ConfigError("recommend needs --user (a user of the training data), --history (a visitor's movies), "
                          "or both (a user and the movies they rated since training)")
    model = _load_model(args.model)
    exclude = [_id_list(args.exclude, "--exclude")] if args.exclude else None
    history = _id_list(args.history, "--history") if args.history is not None else None
    if (exclude or history) and not args.exclude_seen:
        raise ConfigError(f"{'--exclude' if exclude else '--history'} works with seen movies excluded; leave out "
                          "--include-seen")
    if args.user is None:
        return _recommend_from_history(model, history, exclude, args.k)
    out = model.recommend([args.user], k=args.k, exclude_seen=args.exclude_seen, exclude=exclude,
                          history=[history] if history else None, allow_unknown=True, arrays=True)
    _note_cap(args.k, out["movie_ids"].shape[1], "the candidates the retrieval stage hands the ranker "
              "(serving.num_candidates at training)")
    if not bool(out["known_user"][0]) and not int(out.get("history_known", [0])[0]):
        if not args.allow_unknown:
            raise ModelError(f"user {args.user!r} is not in the model's training data (ids are matched as text, "
                             "exactly as in the training data); --allow-unknown shows what the model serves such "
                             "users (well-rated popular movies), --history scores a visitor from their movies")
        print(f"user {args.user!r} is unknown to the model: well-rated popular movies")
    since = f", with {len(history)} movie(s) rated since training" if history else ""
    print(f"top {out['movie_ids'].shape[1]} for user {args.user}{since} "
          f"({'seen movies excluded' if args.exclude_seen else 'seen movies included'}):")
    _print_ranked(model, out)
    if args.explain:
        reasons = model.explain(args.user, out["movie_ids"][0], k=3, arrays=True)
        print("because the user rated (share of the movie's item-item score from their ratings):")
        for movie, titles, shares in zip(out["movie_ids"][0], reasons["titles"], reasons["shares"]):
            because = "; ".join(f"{t} ({s:.0%})" for t, s in zip(titles, shares) if t) or "no rated movie points to it"
            print(f"  {movie:>9}: {because}")
    return 0


def _add_similar(commands) -> None:
    similar = commands.add_parser("similar", help="movies closest to a movie in the retrieval embedding space")
    similar.add_argument("--model", required=True, help="saved_models/NAME or saved_models/NAME/VERSION (required)")
    similar.add_argument("--movie", required=True, help="movie id, or a title or part of one (required)")
    similar.add_argument("--k", type=_positive, default=10, help="how many similar movies (default 10)")
    similar.set_defaults(handler=_cmd_similar)


def _cmd_similar(args: argparse.Namespace) -> int:
    model = _load_model(args.model)
    movie_id = model.find_movie(args.movie)
    out = model.similar_items([movie_id], k=args.k, arrays=True)
    _note_cap(args.k, out["movie_ids"].shape[1], "the other movies of the catalog")
    print(f"movies similar to {model.title_of(movie_id)} (id {movie_id}):")
    for rank, (movie, name, score) in enumerate(zip(out["movie_ids"][0], out["titles"][0], out["scores"][0]), 1):
        print(f"  {rank:>3}  {score:>6.3f}  {movie:>9}  {name}")
    return 0


def _add_demo(commands) -> None:
    demo = commands.add_parser("demo", help="train on the embedded data, export, show metrics and recommendations")
    demo.add_argument("--out", default="saved_models/demo", help="model folder (default saved_models/demo)")
    demo.add_argument("--data", help="data source (default synthetic:100k)")
    demo.add_argument("--quick", action="store_true",
                      help="a few epochs on small data, seconds; for tests (default: the full demo, about a minute)")
    demo.set_defaults(handler=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    from tfrs_pipeline.demo import run_demo

    run_demo(args.out, data=args.data or "synthetic:100k", quick=args.quick)
    return 0


def _add_serve(commands) -> None:
    serve = commands.add_parser("serve", help="serve a model base over HTTP (TensorFlow Serving's REST API)")
    which = serve.add_mutually_exclusive_group(required=True)
    which.add_argument("--model-base", help="saved_models/NAME: serve its versions and load new ones as they appear "
                                            "(one of --model-base and --model is required)")
    which.add_argument("--model", help="saved_models/NAME (as --model-base) or saved_models/NAME/VERSION (that "
                                       "version alone; one of --model-base and --model is required)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=_port, default=8501, help="TCP port, 0 for any free one (default 8501)")
    serve.add_argument("--allowed-hosts", metavar="HOSTS",
                       help="more host names requests may name in their Host header, comma-separated, * for any "
                            "(default: the --host address, and localhost on a loopback address; any with --host 0.0.0.0)")
    serve.add_argument("--version-policy", default="latest",
                       help="latest, all, or versions such as 1,3 (default latest: the newest version that loads)")
    serve.add_argument("--labels", help="TOML file with a [labels] table such as stable = 1, canary = 2, "
                                        "re-read on every poll (default: no labels)")
    serve.add_argument("--poll-seconds", type=_seconds, default=2.0,
                       help="how often the model base is scanned for new versions (default 2)")
    serve.add_argument("--batching", action="store_true",
                       help="merge concurrent requests to one signature into one call (default: off)")
    serve.add_argument("--batch-window-ms", type=_milliseconds, default=2.0,
                       help="with --batching: how long a batch waits for more requests (default 2)")
    serve.add_argument("--max-batch-rows", type=_positive, default=256,
                       help="with --batching: rows that close a batch at once (default 256)")
    serve.add_argument("--batch-threads", type=_positive, default=1,
                       help="with --batching: batches that may run at the same time, TF Serving's "
                            "num_batch_threads (default 1)")
    serve.add_argument("--intra-op-threads", type=_positive,
                       help="threads one TensorFlow op may use, TF Serving's --tensorflow_intra_op_parallelism "
                            "(default: TensorFlow's choice, one per core)")
    serve.add_argument("--inter-op-threads", type=_positive,
                       help="TensorFlow ops that may run at the same time, TF Serving's "
                            "--tensorflow_inter_op_parallelism (default: TensorFlow's choice, one per core)")
    serve.add_argument("--max-body-bytes", type=_byte_count, default=4 * 1024 * 1024,
                       help="largest request body; larger ones get 413 (default 4194304)")
    serve.add_argument("--max-batch", type=_positive, default=1024, help="most rows per request (default 1024)")
    serve.add_argument("--max-list", type=_positive, default=1000,
                       help="most movie ids per row of a list input (default 1000)")
    serve.add_argument("--max-k", type=_positive, default=1000, help="largest k a request may ask for (default 1000)")
    serve.add_argument("--max-answer", type=_positive, default=100_000,
                       help="most movies one answer may hold, rows x k; more is a 400 (default 100000)")
    serve.add_argument("--request-timeout", type=_seconds, default=30.0,
                       help="seconds before an unanswered request gets 504 (default 30)")
    serve.set_defaults(handler=_cmd_serve)


def _cmd_serve(args: argparse.Namespace) -> int:
    import logging

    from tfrs_pipeline.server import make_server, set_tensorflow_threads, tensorflow_threads
    from tfrs_pipeline.server.rest import Limits
    from tfrs_pipeline.server.versions import parse_version_policy

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    # One access-log line per request: skip the record fields this format never shows (the
    # public switches of the logging docs' "Optimization" section).
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    model = args.model_base or args.model  # one of them: argparse requires it
    set_tensorflow_threads(args.intra_op_threads, args.inter_op_threads)
    limits = Limits(max_body_bytes=args.max_body_bytes, max_batch=args.max_batch, max_list=args.max_list,
                    max_k=args.max_k, max_answer=args.max_answer, timeout_seconds=args.request_timeout)
    server = make_server(model, args.host, args.port, version_policy=parse_version_policy(args.version_policy),
                         labels_path=args.labels, poll_seconds=args.poll_seconds, limits=limits,
                         batching=args.batching, batch_window_ms=args.batch_window_ms,
                         max_batch_rows=args.max_batch_rows, batch_threads=args.batch_threads,
                         allowed_hosts=[h.strip() for h in (args.allowed_hosts or "").split(",") if h.strip()])
    versions = server.versions
    for state in versions.states():
        if state.error:
            print(f"tfrs-pipeline: warning: version {state.version} is not served: {state.error}", file=sys.stderr)
    served = ", ".join(str(s.version) for s in versions.available())
    print(f"serving {versions.base} (version {served}) on {server.url}  (POST /v1/models/{versions.name}:predict, "
          "GET /recommend?user_id=ID&k=10, GET /similar?movie_id=ID, GET /metrics); SIGTERM or Ctrl-C stops; "
          f"TensorFlow threads: {tensorflow_threads()}", flush=True)
    server.run()
    return 0


def _add_benchmark(commands) -> None:
    benchmark = commands.add_parser("benchmark", help="print speed and quality figures (not a test)")
    benchmark.add_argument("benchmark", choices=("retrieval", "two-stage", "serving", "index", "scale", "gpu", "item-item"),
                           help="retrieval: the TFRS tutorial configuration vs ours; two-stage: the top-10 ablation of "
                                "every stage beside EASE and most-popular; serving: milliseconds per request; index: "
                                "brute force vs ScaNN latency and recall on synthetic catalogs; scale: the whole training run at "
                                "growing data sizes; gpu: the GPU path proven (CPU float32, default, mixed precision, "
                                "mirrored; reload; device placement); item-item: seconds and peak memory of the ranker's "
                                "item-item table per data set (--sizes, or --data)")
    _add_data_options(benchmark)
    benchmark.add_argument("--config", help="TOML configuration file of our model (default: the built-in one)")
    benchmark.add_argument("--set", action="append", metavar="KEY=VALUE",
                           help="any configuration key, repeatable (default: none)")
    benchmark.add_argument("--with-ease", action="store_true",
                           help="retrieval: add the closed-form EASE baseline (default: off)")
    benchmark.add_argument("--profile-steps", action="store_true",
                           help="retrieval: milliseconds per training step, part by part, beside the tutorial's step, "
                                "instead of training (default: off)")
    benchmark.add_argument("--model", help="serving: saved_models/NAME (required for serving)")
    benchmark.add_argument("--requests", type=_positive, default=200,
                           help="serving: requests per client at each client count (default 200)")
    benchmark.add_argument("--clients", type=_counts(1, 256, "1,8,32", "client counts"), default=[1, 8, 32],
                           help="serving: concurrent HTTP clients to measure, comma-separated (default 1,8,32)")
    benchmark.add_argument("--intra-op-threads", type=_positive,
                           help="serving: the server's --intra-op-threads (default: TensorFlow's choice)")
    benchmark.add_argument("--inter-op-threads", type=_positive,
                           help="serving: the server's --inter-op-threads (default: TensorFlow's choice)")
    benchmark.add_argument("--sizes", type=_synthetic_sizes,
                           help="scale, gpu and item-item: synthetic data sizes, comma-separated (default: scale 100k,1m,20m; "
                                "gpu 100k,1m)")
    benchmark.add_argument("--epochs", type=_positive,
                           help="most epochs for both stages (default: the configuration's)")
    benchmark.add_argument("--retrieval-epochs", type=_positive, help="most retrieval epochs (default: the configuration's)")
    benchmark.add_argument("--rating-epochs", type=_positive, help="most rating-model epochs (default: the configuration's)")
    benchmark.add_argument("--ranking-epochs", action=_Renamed, new="--rating-epochs", help=argparse.SUPPRESS)
    benchmark.add_argument("--catalog", type=_counts(1, 50_000_000, "10000,100000", "catalog sizes"),
                           default=[10_000, 100_000, 1_000_000],
                           help="index: catalog sizes in movies, comma-separated (default 10000,100000,1000000)")
    benchmark.add_argument("--dim", type=_positive, default=64, help="index: embedding dimension (default 64)")
    benchmark.add_argument("--queries", type=_positive, default=200,
                           help="index: queries for recall and batch-1 latency (default 200)")
    benchmark.add_argument("--no-export", action="store_true",
                           help="index: skip exporting and reloading the largest ScaNN index (default: export)")
    benchmark.add_argument("--seeds", type=_positive, default=1,
                           help="two-stage: training runs, with seeds runtime.seed, runtime.seed + 1, ...; with more than one, the mean, "
                                "standard deviation and range of each figure follow (default 1)")
    benchmark.add_argument("--out", help="also write the figures as JSON here (default: print only)")
    benchmark.set_defaults(handler=_cmd_benchmark)


def _cmd_benchmark(args: argparse.Namespace) -> int:
    from tfrs_pipeline import benchmarks

    config = load_config(args.config, _training_overrides(args))
    if args.benchmark == "retrieval":
        if args.profile_steps:
            benchmarks.profile_retrieval_step(config.data.source, config=config)
        else:
            benchmarks.benchmark_retrieval(config.data.source, config=config, with_ease=args.with_ease, out=args.out)
    elif args.benchmark == "two-stage":
        benchmarks.benchmark_two_stage(config.data.source, config=config, seeds=args.seeds, out=args.out)
    elif args.benchmark == "scale":
        train_args = []
        for flag, value in (("--epochs", args.epochs), ("--retrieval-epochs", args.retrieval_epochs),
                            ("--rating-epochs", args.rating_epochs)):
            train_args += [flag, str(value)] if value is not None else []
        for assignment in args.set or []:
            train_args += ["--set", assignment]
        benchmarks.benchmark_scale(tuple(args.sizes or ("100k", "1m", "20m")), train_args=train_args, out=args.out)
    elif args.benchmark == "item-item":
        sources = [f"synthetic:{size}" for size in args.sizes] if args.sizes else [config.data.source]
        benchmarks.benchmark_item_item(tuple(sources), config=config, out=args.out)
    elif args.benchmark == "gpu":
        benchmarks.benchmark_gpu(tuple(args.sizes or ("100k", "1m")), epochs=args.epochs or 2, out=args.out)
    elif args.benchmark == "index":
        benchmarks.benchmark_index(tuple(args.catalog), dim=args.dim, queries=args.queries, seed=config.runtime.seed,
                                   export=not args.no_export, out=args.out)
    else:
        if not args.model:
            raise ConfigError("benchmark serving needs --model saved_models/NAME (train one with "
                              "`tfrs-pipeline demo` or `tfrs-pipeline train`)")
        server_options = [f"--{name}-op-threads={value}" for name, value in
                          (("intra", args.intra_op_threads), ("inter", args.inter_op_threads)) if value]
        benchmarks.benchmark_serving(args.model, clients=tuple(args.clients), requests=args.requests, out=args.out,
                                     server_options=server_options)
    return 0


#: The largest ``--k`` and ``--requests`` the command line takes.
MAX_COUNT = 100_000


def _synthetic_sizes(text: str) -> list[str]:
    from tfrs_pipeline.data.synthetic import parse_size

    sizes = [part.strip() for part in text.split(",") if part.strip()]
    try:
        for size in sizes:
            parse_size(size)
    except PipelineError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if not sizes:
        raise argparse.ArgumentTypeError(f"expected synthetic sizes such as 100k,1m,20m, got {text!r}")
    return sizes


def _counts(low: int, high: int, example: str, what: str):
    """A comma-separated list of whole numbers from ``low`` to ``high`` (argparse type)."""

    def parse(text: str) -> list[int]:
        try:
            counts = [int(part) for part in text.split(",") if part.strip()]
        except ValueError:
            counts = []
        if not counts or not all(low <= c <= high for c in counts):
            raise argparse.ArgumentTypeError(f"expected {what} from {low:,} to {high:,} such as {example}, got {text!r}")
        return counts

    return parse


def _byte_count(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 2**30:
        raise argparse.ArgumentTypeError(f"expected a number of bytes from 1 to {2**30:,}, got {text!r}")
    return int(text)


def _number_in(low: float, high: float, unit: str, low_included: bool):
    """An argparse type: a number of ``unit`` from ``low`` (included or not) to ``high``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not (low <= value if low_included else low < value) or not value <= high:
            bound = "from" if low_included else "above"
            raise argparse.ArgumentTypeError(f"expected {unit} {bound} {low:g} up to {high:g}, got {text!r}")
        return value

    return parse


_seconds = _number_in(0, 86_400, "seconds", low_included=False)
_milliseconds = _number_in(0, 1000, "milliseconds", low_included=True)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if not 1 <= value <= MAX_COUNT:
        raise argparse.ArgumentTypeError(f"expected a positive integer up to {MAX_COUNT:,}, got {value}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a TCP port number from 0 to 65535, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a TCP port number from 0 to 65535, got {value}")
    return value


def load_config(config_path: str | None, overrides: dict[str, object]) -> PipelineConfig:
    """The default configuration, updated from a TOML file and then from options."""
    base = load_toml(config_path) if config_path else PipelineConfig()
    return apply_overrides(base, overrides).validate()


def main(argv: Sequence[str] | None = None) -> int:
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


if __name__ == "__main__":
    sys.exit(main())
