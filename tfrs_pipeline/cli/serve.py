"""``tfrs-pipeline serve``: a model base over HTTP, with TensorFlow Serving's REST API."""

from __future__ import annotations

import argparse
import sys

from tfrs_pipeline.cli.options import byte_count, milliseconds, port, positive, seconds


def add_commands(commands) -> None:
    """``serve``."""
    serve = commands.add_parser("serve", help="serve a model base over HTTP (TensorFlow Serving's REST API)")
    which = serve.add_mutually_exclusive_group(required=True)
    which.add_argument("--model-base", help="saved_models/NAME: serve its versions and load new ones as they appear "
                                            "(one of --model-base and --model is required)")
    which.add_argument("--model", help="saved_models/NAME (as --model-base) or saved_models/NAME/VERSION (that "
                                       "version alone; one of --model-base and --model is required)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=port, default=8501, help="TCP port, 0 for any free one (default 8501)")
    serve.add_argument("--allowed-hosts", metavar="HOSTS",
                       help="more host names requests may name in their Host header, comma-separated, * for any "
                            "(default: the --host address, and localhost on a loopback address; any with --host 0.0.0.0)")
    serve.add_argument("--version-policy", default="latest",
                       help="latest, all, or versions such as 1,3 (default latest: the newest version that loads)")
    serve.add_argument("--labels", help="TOML file with a [labels] table such as stable = 1, canary = 2, "
                                        "re-read on every poll (default: no labels)")
    serve.add_argument("--poll-seconds", type=seconds, default=2.0,
                       help="how often the model base is scanned for new versions (default 2)")
    serve.add_argument("--batching", action="store_true",
                       help="merge concurrent requests to one signature into one call (default: off)")
    serve.add_argument("--batch-window-ms", type=milliseconds, default=2.0,
                       help="with --batching: how long a batch waits for more requests (default 2)")
    serve.add_argument("--max-batch-rows", type=positive, default=256,
                       help="with --batching: rows that close a batch at once (default 256)")
    serve.add_argument("--batch-threads", type=positive, default=1,
                       help="with --batching: batches that may run at the same time, TF Serving's "
                            "num_batch_threads (default 1)")
    serve.add_argument("--intra-op-threads", type=positive,
                       help="threads one TensorFlow op may use, TF Serving's --tensorflow_intra_op_parallelism "
                            "(default: TensorFlow's choice, one per core)")
    serve.add_argument("--inter-op-threads", type=positive,
                       help="TensorFlow ops that may run at the same time, TF Serving's "
                            "--tensorflow_inter_op_parallelism (default: TensorFlow's choice, one per core)")
    serve.add_argument("--max-body-bytes", type=byte_count, default=4 * 1024 * 1024,
                       help="largest request body; larger ones get 413 (default 4194304)")
    serve.add_argument("--max-batch", type=positive, default=1024, help="most rows per request (default 1024)")
    serve.add_argument("--max-list", type=positive, default=1000,
                       help="most movie ids per row of a list input (default 1000)")
    serve.add_argument("--max-k", type=positive, default=1000, help="largest k a request may ask for (default 1000)")
    serve.add_argument("--max-answer", type=positive, default=100_000,
                       help="most movies one answer may hold, rows x k; more is a 400 (default 100000)")
    serve.add_argument("--request-timeout", type=seconds, default=30.0,
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

