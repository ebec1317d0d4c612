"""The model commands: ``train``, ``evaluate``, ``recommend``, ``similar`` and ``demo``."""

from __future__ import annotations

import argparse
import sys

from tfrs_pipeline.cli.options import (
    TRAINING_OPTIONS,
    Renamed,
    add_data_options,
    add_setting_options,
    load_config,
    positive,
    training_overrides,
)
from tfrs_pipeline.config import PipelineConfig
from tfrs_pipeline.errors import ConfigError, ModelError


def add_commands(commands) -> None:
    """``train``, ``evaluate``, ``recommend``, ``similar`` and ``demo``, in ``--help``'s order."""
    for add in (_add_train, _add_evaluate, _add_recommend, _add_similar, _add_demo):
        add(commands)


def _add_train(commands) -> None:
    train = commands.add_parser("train", help="train both stages, export, evaluate")
    add_data_options(train)
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
    train.add_argument("--ranking-epochs", action=Renamed, new="--rating-epochs", help=argparse.SUPPRESS)
    add_setting_options(train.add_argument_group("split and runtime"), TRAINING_OPTIONS)
    train.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="any configuration key, such as retrieval.embedding_dim=64; repeatable (default: none)")
    train.set_defaults(handler=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    from tfrs_pipeline.evaluation.summary import format_metrics, format_phases
    from tfrs_pipeline.pipeline import run_training

    config = load_config(args.config, training_overrides(args))
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
    recommend.add_argument("--k", type=positive, default=10,
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
    similar.add_argument("--k", type=positive, default=10, help="how many similar movies (default 10)")
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

