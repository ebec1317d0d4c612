"""``tfrs-pipeline benchmark``: speed and quality figures, printed (not tests)."""

from __future__ import annotations

import argparse

from tfrs_pipeline.cli.options import (
    Renamed,
    add_data_options,
    count_list,
    load_config,
    positive,
    synthetic_sizes,
    training_overrides,
)
from tfrs_pipeline.errors import ConfigError


def add_commands(commands) -> None:
    """``benchmark``."""
    benchmark = commands.add_parser("benchmark", help="print speed and quality figures (not a test)")
    benchmark.add_argument("benchmark", choices=("retrieval", "two-stage", "serving", "index", "scale", "gpu", "item-item",
                                                    "visitor-bound"),
                           help="retrieval: the TFRS tutorial configuration vs ours; two-stage: the top-10 ablation of "
                                "every stage beside EASE and most-popular; serving: milliseconds per request; index: "
                                "brute force vs ScaNN latency and recall on synthetic catalogs; scale: the whole training run at "
                                "growing data sizes; gpu: the GPU path proven (CPU float32, default, mixed precision, "
                                "mirrored; reload; device placement); item-item: seconds and peak memory of the ranker's "
                                "item-item table per data set (--sizes, or --data); visitor-bound: on synthetic data, the generator's "
                                "own model recommending from each test user's 5 most recent movies, the ceiling of "
                                "the visitors-from-5 figure there")
    add_data_options(benchmark)
    benchmark.add_argument("--config", help="TOML configuration file of our model (default: the built-in one)")
    benchmark.add_argument("--set", action="append", metavar="KEY=VALUE",
                           help="any configuration key, repeatable (default: none)")
    benchmark.add_argument("--with-ease", action="store_true",
                           help="retrieval: add the closed-form EASE baseline (default: off)")
    benchmark.add_argument("--profile-steps", action="store_true",
                           help="retrieval: milliseconds per training step, part by part, beside the tutorial's step, "
                                "instead of training (default: off)")
    benchmark.add_argument("--model", help="serving: saved_models/NAME (required for serving)")
    benchmark.add_argument("--requests", type=positive, default=200,
                           help="serving: requests per client at each client count (default 200)")
    benchmark.add_argument("--clients", type=count_list(1, 256, "1,8,32", "client counts"), default=[1, 8, 32],
                           help="serving: concurrent HTTP clients to measure, comma-separated (default 1,8,32)")
    benchmark.add_argument("--intra-op-threads", type=positive,
                           help="serving: the server's --intra-op-threads (default: TensorFlow's choice)")
    benchmark.add_argument("--inter-op-threads", type=positive,
                           help="serving: the server's --inter-op-threads (default: TensorFlow's choice)")
    benchmark.add_argument("--sizes", type=synthetic_sizes,
                           help="scale, gpu and item-item: synthetic data sizes, comma-separated (default: scale 100k,1m,20m; "
                                "gpu 100k,1m)")
    benchmark.add_argument("--epochs", type=positive,
                           help="most epochs for both stages (default: the configuration's)")
    benchmark.add_argument("--retrieval-epochs", type=positive, help="most retrieval epochs (default: the configuration's)")
    benchmark.add_argument("--rating-epochs", type=positive, help="most rating-model epochs (default: the configuration's)")
    benchmark.add_argument("--ranking-epochs", action=Renamed, new="--rating-epochs", help=argparse.SUPPRESS)
    benchmark.add_argument("--catalog", type=count_list(1, 50_000_000, "10000,100000", "catalog sizes"),
                           default=[10_000, 100_000, 1_000_000],
                           help="index: catalog sizes in movies, comma-separated (default 10000,100000,1000000)")
    benchmark.add_argument("--dim", type=positive, default=64, help="index: embedding dimension (default 64)")
    benchmark.add_argument("--queries", type=positive, default=200,
                           help="index: queries for recall and batch-1 latency (default 200)")
    benchmark.add_argument("--no-export", action="store_true",
                           help="index: skip exporting and reloading the largest ScaNN index (default: export)")
    benchmark.add_argument("--seeds", type=positive, default=1,
                           help="two-stage: training runs, with seeds runtime.seed, runtime.seed + 1, ...; with more than one, the mean, "
                                "standard deviation and range of each figure follow (default 1)")
    benchmark.add_argument("--out", help="also write the figures as JSON here (default: print only)")
    benchmark.set_defaults(handler=_cmd_benchmark)


def _cmd_benchmark(args: argparse.Namespace) -> int:
    from tfrs_pipeline import benchmarks

    config = load_config(args.config, training_overrides(args))
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
    elif args.benchmark == "visitor-bound":
        benchmarks.benchmark_visitor_bound(config.data.source, config=config, out=args.out)
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

