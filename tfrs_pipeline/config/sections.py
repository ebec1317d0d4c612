"""The configuration's sections, each setting declared once as a field, and the views of those declarations.

Longer than 500 lines: every setting of the pipeline is declared here, each section documented
by its dataclass's docstring; split, a setting's declaration would stand in two places.

Examples:
    >>> SETTINGS["data.csv_user_column"].cli, SETTINGS["retrieval.epochs"].whole
    ('--user-col', (1, 100000))
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from tfrs_pipeline.config.setting import Setting, parse_range, setting
from tfrs_pipeline.errors import ConfigError


@dataclass
class DataConfig:
    """Where ratings come from and what to do with rows that fail validation.

    Args:
        source: ``synthetic[:SIZE]``, ``movielens:PATH``, ``tfds:NAME``, ``csv:PATH`` (any
            delimited text) or ``parquet:PATH``.
        on_bad_rows: ``error`` stops at the first bad row; ``skip`` drops and counts them.
        tfds_data_dir: folder holding prepared TFDS data (``tfds:`` sources only).
        csv_user_column, csv_item_column, csv_timestamp_column: column names of a ``csv:``
            or ``parquet:`` interactions file.
        csv_rating_column: its rating column; empty: ``rating`` (a file without one is an
            error unless ``implicit``).
        implicit: every row of a ``csv:`` or ``parquet:`` source is a positive interaction
            (plays, clicks, purchases); its rating column, if any, is not read. Never guessed.
        sep: field separator of a ``csv:`` file, any string (``::`` too; ``\t`` a tab); empty:
            tab for ``.tsv``, else ``,``.
        columns: names of every field of a ``csv:`` file without a header line (implies no header).
        csv_items_path: optional items file (delimited or ``.parquet``) with ``csv_item_column``,
            ``csv_title_column`` and optionally a genres column (``|``-separated).
        csv_title_column: title column of the items file.
        genres_column: genres column of the items file; empty: ``genres`` when present.
        items_sep, items_columns: ``sep`` and ``columns`` of the items file (``items_sep`` empty: ``sep``).
        rating_scale: lowest and highest allowed rating of a ``csv:`` or ``parquet:`` source
            (any range: 0-10, 1-5, -10-10); empty: 0.5 to 5. Other sources keep their own.
        encoding: the text encoding of a ``csv:`` source's files (``latin-1``, ``cp1252``, ...);
            empty: UTF-8 (a MovieLens layout: its published one). One encoding per file: a
            line that does not decode is an error naming it.
        date_format: how the timestamp column of a ``csv:`` or ``parquet:`` source writes dates,
            in ``strftime`` codes (``%d/%m/%Y``); empty: seconds, ISO 8601 dates, or numeric dates
            in the one order the column allows (a column that fits both orders is an error).
    """

    source: str = setting(
        "synthetic:100k", cli="--data",
        help="synthetic[:SIZE], movielens:PATH, tfds:NAME, csv:PATH (any delimited text) or parquet:PATH "
             "(default synthetic:100k)")
    on_bad_rows: str = setting(
        "error", choices=("error", "skip"), cli="--on-bad-rows", python="on_bad_rows",
        help="stop at the first bad row (default error), or drop and count them (skip)")
    tfds_data_dir: str = setting(
        "", cli="--tfds-data-dir",
        help="folder with prepared TFDS data (default: TFDS's own, ~/tensorflow_datasets)")
    csv_user_column: str = setting(
        "user_id", cli="--user-col", python="user_col",
        help="csv/parquet: user id column (default user_id)")
    csv_item_column: str = setting(
        "item_id", cli="--item-col", python="item_col",
        help="csv/parquet: item id column (default item_id)")
    csv_rating_column: str = setting(
        "", cli="--rating-col", python="rating_col",
        help="csv/parquet: rating column (default rating; a file without one needs --implicit)")
    implicit: bool = setting(
        False, cli="--implicit", python="implicit",
        help="csv/parquet: every row is a positive interaction (plays, clicks, purchases), no ratings "
             "read (default: off, a rating column is required)")
    csv_timestamp_column: str = setting(
        "timestamp", cli="--timestamp-col", python="timestamp_col",
        help="csv/parquet: timestamp column, seconds or dates (default timestamp; absent: all 0)")
    sep: str = setting(
        "", cli="--sep",
        help="csv: field separator, any string such as '::' or '\\t' (default: tab for .tsv, else ',')")
    columns: list[str] = setting(
        factory=list, cli="--columns",
        help="csv: names of every field of a file without a header line, comma-separated, such as "
             "user_id,item_id,rating,timestamp (default: the header line)")
    csv_items_path: str = setting(
        "", cli="--items",
        help="csv/parquet: items file with id and title columns (default: none, titles are the ids)")
    csv_title_column: str = setting(
        "title", cli="--title-col", python="title_col",
        help="items file's title column (default title)")
    genres_column: str = setting(
        "", cli="--genres-col", python="genres_col",
        help="items file's genres column, split on '|' (default: genres when present)")
    items_sep: str = setting(
        "", cli="--items-sep",
        help="items file's field separator (default: --sep)")
    items_columns: list[str] = setting(
        factory=list, cli="--items-columns",
        help="items file's field names when it has no header line (default: its header)")
    rating_scale: list[float] = setting(
        factory=list, parse=parse_range, cli="--rating-scale", python="rating_scale",
        help="csv/parquet: LOW-HIGH, such as 0-10, 1-5 or -10-10 (default 0.5-5); other sources keep "
             "their own")
    encoding: str = setting(
        "", cli="--encoding", python="encoding",
        help="csv/movielens: the files' text encoding, such as latin-1 or cp1252 (default UTF-8; "
             "MovieLens: its layout's own)")
    date_format: str = setting(
        "", cli="--date-format", python="date_format",
        help="csv/parquet: how the timestamp column writes dates, in strftime codes such as "
             "%%d/%%m/%%Y (default: seconds, ISO 8601, or numeric dates in the one order the column "
             "allows)")


@dataclass
class SplitConfig:
    """How ratings are split into training and test sides.

    Args:
        kind: ``random``, ``temporal`` (one global time cut-off) or ``leave-last-out``.
        test_fraction: share of ratings in the test side (``random``, ``temporal``).
        cutoff_timestamp: ``temporal`` only: ratings at or after it (seconds) are test;
            0 means the cut-off that leaves ``test_fraction`` of ratings on the test side.
        leave_last: ``leave-last-out`` only: the last N ratings of each user are test.
        validation_fraction: share of training ratings held out for early stopping.
        seed: random seed of the split.
    """

    kind: str = setting(
        "random", choices=("random", "temporal", "leave-last-out"), cli="--split",
        help="how to split (default random)")
    test_fraction: float = setting(
        0.2, real="(0.0, 1.0)", cli="--test-fraction",
        help="share of ratings in the test side (default 0.2)")
    cutoff_timestamp: int = setting(0, whole=(0, 7_258_118_399))  # 0: the cut-off that leaves test_fraction; up to 2200
    leave_last: int = setting(1, whole=(1, 10_000))
    validation_fraction: float = setting(0.05, real="[0.0, 0.5)")
    seed: int = setting(
        42, whole=(0, 2**31 - 1), cli="--split-seed",
        help="seed of the split (default 42)")


@dataclass
class RetrievalConfig:
    """The two-tower retrieval model and how it is trained.

    Args:
        embedding_dim: size of the query and candidate embeddings.
        user_embedding: add the user id's embedding to the query tower. Off (the default), the
            query is pooled from the user's history alone, so a visitor who brings a known user's
            history gets that user's query; on, a known user's query also holds their id's embedding
            (a visitor gets the mean training user's).
        user_features: add demographics (age, gender, occupation) to the query tower (known users'
            only: a visitor's are unknown, so their query then differs from a known user's).
        history_features: add the mean embedding of the user's training movies to the
            query tower (the rated movie itself is left out while training on it).
        movie_features: add genres, release year and title words to the candidate tower.
        normalize: L2-normalise both embeddings (scores become cosine similarities).
        history_dropout: share of each user's history dropped at random per training step
            (denoising: the tower learns to predict movies from partial histories).
        history_sample: while training, pool a longer history from this many of its movies,
            drawn at random each step (0: all; evaluation and serving always pool all). Bounds
            a step's cost where heavy users rate thousands of movies.
        short_history: a history of at most this many movies (a visitor's few) gets the
            short-history query: its own projection of the pooled history and its own weight on
            the movies' popularity bias, trained on every example a second time from its user's
            history cut to 1 to this many movies (0: one query for every history).
        short_history_weight: the weight of that second loss beside the whole history's.
        query_hidden_units: ReLU layers of the query tower before its output layer.
        movie_bias: a learned per-movie score bias (popularity), beside the cosine.
        l2: L2 penalty on the id and history embeddings.
        temperature: softmax temperature of the retrieval loss.
        negatives: ``in-batch`` (other examples' movies, with logQ correction) or ``catalog``
            (every movie of the catalog each step: the exact softmax, for catalogs small
            enough to score per batch).
        logq_correction: subtract log sampling probability from in-batch logits.
        remove_accidental_hits: mask in-batch negatives that are the positive movie.
        optimizer: ``adagrad``, ``adam``, ``lazy_adam`` (Adam that updates only the embedding
            rows a batch uses: the same step on them, far less work on big tables) or ``sgd``.
        learning_rate: optimizer step size.
        batch_size: training examples per step.
        steps_per_execution: training steps per call into TensorFlow (Keras's ``steps_per_execution``)
            on runs of at least 200 planned steps on one replica. At 100K ratings epochs after the
            first took 0.83-0.87 s against 0.95-1.21 s with one step per call; none faster at 1M
            (see the README). The live batch counter and the NaN check come once per call.
        epochs: most epochs to train.
        patience: epochs without validation improvement before stopping early.
        monitor_k: early stopping watches the validation hit rate@K (seen movies excluded).
        index: ``brute-force`` or ``scann`` (approximate; for catalogs too big for brute force).
        refit: once validation has chosen the epochs (and the list ranker has learned from the
            hold-out's lists), train the served two-tower model again on the whole training side
            for the best epoch's count (``retrieval_refit`` in ``metrics.json``); off: serve the
            early-stopped model, which never saw the validation hold-out.
    """

    embedding_dim: int = setting(64, whole=(1, 4096))
    user_embedding: bool = False
    user_features: bool = False
    history_features: bool = True
    movie_features: bool = True
    normalize: bool = True
    history_dropout: float = setting(0.5, real="[0.0, 1.0)")
    history_sample: int = setting(128, whole=(0, 1_000_000))
    short_history: int = setting(0, whole=(0, 1_000_000))
    short_history_weight: float = setting(0.3, real="[0.0, 100.0]")
    query_hidden_units: list[int] = setting(factory=list, whole=(1, 65_536))
    movie_bias: bool = True
    l2: float = setting(0.0, real="[0.0, 1.0]")
    temperature: float = setting(0.2, real="(0.0, 100.0]")
    negatives: str = setting("in-batch", choices=("in-batch", "catalog"))
    logq_correction: bool = True
    remove_accidental_hits: bool = True
    optimizer: str = setting("lazy_adam", choices=("adagrad", "adam", "lazy_adam", "sgd"))
    learning_rate: float = setting(0.003, real="(0.0, 1000.0]")
    batch_size: int = setting(2048, whole=(1, 1_048_576))
    steps_per_execution: int = setting(16, whole=(1, 100_000))
    epochs: int = setting(20, whole=(1, 100_000))
    patience: int = setting(2, whole=(0, 100_000))
    monitor_k: int = setting(100, whole=(1, 100_000))
    index: str = setting("brute-force", choices=("brute-force", "scann"))
    refit: bool = True


@dataclass
class RatingConfig:
    """The rating model: a predicted rating (or, on implicit feedback, a relevance) for any user and movie.

    It gives every recommended movie its predicted rating, and the list ranker uses it as
    its rating head (see :class:`RankerConfig`).

    Args:
        embedding_dim: size of the user and movie embeddings.
        hidden_units: widths of the MLP layers.
        cross_layer: put a ``tfrs.layers.dcn.Cross`` layer before the MLP.
        history_features: add the user's mean history embedding (SVD++-style implicit feedback).
        history_sample: while training, pool a longer history from this many of its movies,
            drawn at random each step (0: all).
        side_features: add genres, year and demographics.
        l2: L2 penalty on embeddings and biases.
        dropout: dropout rate in the MLP.
        learning_rate: Adam step size.
        batch_size: training examples per step.
        epochs: most epochs to train.
        patience: epochs without validation RMSE improvement before stopping early.
        reduce_lr_on_plateau: divide the learning rate by 3 after an epoch without improvement.
        stack_mf: stack biased matrix factorization with the network (explicit ratings only): ALS
            is fitted on the fitting part, the two predictions are blended by least squares on the
            validation hold-out (kept only where that lowers its RMSE), and the factorization is
            refitted on the whole training side for the exported model.
        mf_factors: the stacked factorization's rank.
        mf_regularization: its L2 penalty.
    """

    embedding_dim: int = setting(32, whole=(1, 4096))
    hidden_units: list[int] = setting(factory=lambda: [64, 32], whole=(1, 65_536))
    cross_layer: bool = False
    history_features: bool = True
    history_sample: int = setting(128, whole=(0, 1_000_000))
    side_features: bool = True
    l2: float = setting(1e-4, real="[0.0, 1.0]")
    dropout: float = setting(0.1, real="[0.0, 1.0)")
    learning_rate: float = setting(0.002, real="(0.0, 1000.0]")
    batch_size: int = setting(1024, whole=(1, 1_048_576))
    epochs: int = setting(30, whole=(1, 100_000))
    patience: int = setting(3, whole=(0, 100_000))
    reduce_lr_on_plateau: bool = True
    stack_mf: bool = True
    mf_factors: int = setting(32, whole=(1, 1024))
    mf_regularization: float = setting(15.0, real="[0.0, 1e6]")


@dataclass
class RankerConfig:
    """The list ranker, the second stage: it orders the candidates that retrieval hands it.

    It is trained on retrieval's own candidate lists (softmax over each list), with the
    rating model as its rating head and an item-item score among its features.

    Args:
        enabled: order the retrieved candidates with the list ranker; off, the rating blend
            (retrieval logit + w * predicted rating, w chosen on validation) orders them.
        hidden_units: widths of the relevance MLP (none: a linear function of the features,
            best on ml-latest-small's few hundred training lists).
        learning_rate: Adam step size.
        batch_size: candidate lists per training step.
        epochs: most epochs to train.
        patience: epochs without validation NDCG@10 improvement before stopping early.
        neighbours: item-item weights kept per movie, on average: EASE keeps the strongest
            ``neighbours`` x movies of its weights (by magnitude, so a popular movie keeps more than
            a rare one; all of them on a small catalog), ItemKNN each movie's strongest. The served
            model holds them as a sparse matrix (8 bytes a weight) and scores a history per request.
        max_item_weights: most item-item weights kept in all (``neighbours`` is lowered to fit; 0: no
            cap): 5,000,000 is 38 MiB, held by the pipeline and again by the ranking stage's SavedModel.
        item_model: ``ease`` (over every rated movie), ``cosine`` (ItemKNN) or ``auto`` (EASE over the
            20,000 most-rated movies, ItemKNN for the other rated movies).
        ease_regularization: EASE's L2 penalty (lambda) in the ranker's item-item model (the EASE
            baseline of the evaluation keeps 200).
        sessions: whether EASE in the item-item model counts co-ratings a user made minutes apart
            more (a session kernel, :class:`~tfrs_pipeline.ranking.neighbours.Sessions`): ``auto``
            fits it with and without and keeps the one with the better NDCG@10 on the validation
            hold-out; ``on``; ``off``. Never where every timestamp is the same.
        session_minutes: the session kernel's time scale.
        session_weight: the kernel's share of the co-rating counts (0-1).
        session_regularization: EASE's L2 penalty (lambda) with the kernel.
        item_candidates: movies the item-item model adds to retrieval's candidates (its best-scored
            ones not retrieved already), so the ranker can reach movies retrieval missed; 0: none.
        short_history: besides each hold-out user's list from their whole fitting-part history, the
            ranker learns from one made from their this many most recent movies alone, as a visitor
            who brings only those is served (a history's shortness is among its features); 0: not.
        cross_fit_folds: besides the hold-out's lists, train on cross-fitted lists from every
            training user: the fitting part is dealt into this many folds, and retrieval and the
            rating model are trained again without each fold to propose and score its lists
            (:mod:`~tfrs_pipeline.ranking.cross_fit`); 0: the hold-out's lists only.
        cross_fit_max_users: cross-fit only while the training side has at most this many users
            (each fold is a training of both models; more users give the hold-out lists enough).
    """

    enabled: bool = True
    hidden_units: list[int] = setting(factory=list, whole=(1, 65_536))
    learning_rate: float = setting(0.003, real="(0.0, 1000.0]")
    batch_size: int = setting(32, whole=(1, 1_048_576))
    epochs: int = setting(100, whole=(1, 100_000))
    patience: int = setting(10, whole=(0, 100_000))
    neighbours: int = setting(512, whole=(1, 100_000))
    max_item_weights: int = setting(5_000_000, whole=(0, 2_000_000_000))
    item_model: str = setting("auto", choices=("auto", "ease", "cosine"))
    ease_regularization: float = setting(200.0, real="(0.0, 1e9]")
    sessions: str = setting("auto", choices=("auto", "on", "off"))
    session_minutes: float = setting(5.0, real="(0.0, 1e9]")
    session_weight: float = setting(0.6, real="[0.0, 1.0]")
    session_regularization: float = setting(100.0, real="(0.0, 1e9]")
    item_candidates: int = setting(100, whole=(0, 100_000))
    short_history: int = setting(5, whole=(0, 100_000))
    cross_fit_folds: int = setting(0, whole=(0, 20))
    cross_fit_max_users: int = setting(10_000, whole=(0, 1_000_000_000))


@dataclass
class ServingConfig:
    """How the two stages are put together.

    Args:
        num_candidates: movies the retrieval stage hands to the ranking stage.
        k: length of the final list when a caller gives none.
    """

    num_candidates: int = setting(100, whole=(1, 100_000))
    k: int = setting(10, whole=(1, 100_000))


@dataclass
class RuntimeConfig:
    """Where and how training runs.

    Args:
        strategy: ``default`` (one device; the GPU when present), ``mirrored`` (every local GPU) or
            ``multi-worker`` (``tf.distribute.MultiWorkerMirroredStrategy`` over the workers that
            ``TF_CONFIG`` names; the chief publishes the model).
        mixed_precision: compute in float16 (GPU) or bfloat16 (CPU), keep weights in float32.
        seed: seed of model initialisation and shuffling.
        verbose: Keras progress output (1 bar, 2 one line per epoch, 0 silent; -1 auto).
        backup_dir: folder where each stage is backed up every epoch and once finished, so that
            the same command started again after a crash resumes instead of starting over
            (removed when the run publishes); empty: no backup.
    """

    strategy: str = setting(
        "default", choices=("default", "mirrored", "multi-worker"), cli="--strategy",
        help="mirrored: tf.distribute.MirroredStrategy over local GPUs; multi-worker: "
             "MultiWorkerMirroredStrategy over the workers in TF_CONFIG, the chief publishes "
             "(default: one device)")
    mixed_precision: bool = setting(
        False, cli="--mixed-precision",
        help="float16 on GPU, bfloat16 on CPU (default: float32)")
    seed: int = setting(
        7, whole=(0, 2**31 - 1), cli="--seed",
        help="seed of initialisation and shuffling (default 7)")
    verbose: int = setting(
        -1, choices=(-1, 0, 1, 2), cli="--verbose", const=2,
        help="0 silent, 1 progress bar, 2 (--verbose alone) one line per epoch and the "
             "whole configuration first, -1 chosen by the terminal (default -1: the settings that "
             "differ from the defaults)")
    backup_dir: str = setting(
        "", cli="--backup-dir", metavar="DIR",
        help="back each stage up in DIR every epoch; the same command started again "
             "after a crash resumes from there (default: no backup)")


@dataclass
class PipelineConfig:
    """Everything a training run needs, printed at its start and saved beside the model (``config.toml``).

    Args:
        data: where the ratings come from (:class:`DataConfig`).
        split: how they are split into training and test (:class:`SplitConfig`).
        retrieval: the two-tower retrieval model (:class:`RetrievalConfig`).
        rating: the rating model (:class:`RatingConfig`).
        ranker: the list ranker that orders the candidates (:class:`RankerConfig`).
        serving: how the two stages are put together (:class:`ServingConfig`).
        runtime: devices, precision, seed and backups (:class:`RuntimeConfig`).

    Examples:
        >>> config = PipelineConfig()
        >>> config.serving.num_candidates, config.ranker.item_model
        (100, 'auto')
    """

    data: DataConfig = field(default_factory=DataConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    rating: RatingConfig = field(default_factory=RatingConfig)
    ranker: RankerConfig = field(default_factory=RankerConfig)
    serving: ServingConfig = field(default_factory=ServingConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def validate(self) -> PipelineConfig:
        """Checks values a dataclass cannot; returns self so calls can be chained.

        Returns:
            This configuration.

        Raises:
            ConfigError: naming the first key whose value is out of its range.

        Examples:
            >>> PipelineConfig().validate().split.kind
            'random'
        """
        for dotted, allowed in CHOICES.items():
            section, _, key = dotted.partition(".")
            value = getattr(getattr(self, section), key)
            if value not in allowed:
                raise ConfigError(f"{dotted} must be one of {', '.join(map(str, allowed))}; got {value!r}")
        for dotted, (low, high) in INT_RANGES.items():
            section, _, key = dotted.partition(".")
            value = getattr(getattr(self, section), key)
            values = value if isinstance(value, list) else [value]
            if not all(low <= int(v) <= high for v in values):
                shown = f"a list of whole numbers from {low:,} to {high:,}" if isinstance(value, list) else \
                    f"a whole number from {low:,} to {high:,}"
                raise ConfigError(f"{dotted} must be {shown}, got {value}")
        for dotted, (low, high, high_included) in FLOAT_RANGES.items():
            section, _, key = dotted.partition(".")
            value = getattr(getattr(self, section), key)
            above = value >= low if dotted not in _ABOVE_LOW else value > low
            below = value <= high if high_included else value < high
            if not (math.isfinite(value) and above and below):
                left = "(" if dotted in _ABOVE_LOW else "["
                raise ConfigError(f"{dotted} must be a number in {left}{low:g}, {high:g}{']' if high_included else ')'}, "
                                  f"got {value}")
        if self.data.encoding:
            import codecs

            try:
                codecs.lookup(self.data.encoding)
            except LookupError:
                raise ConfigError(f"data.encoding {self.data.encoding!r} is not a text encoding Python knows; such as "
                                  "utf-8, latin-1, cp1252") from None
        retrieval = self.retrieval
        if not (retrieval.user_embedding or retrieval.user_features or retrieval.history_features):
            raise ConfigError("the query tower needs something to embed: set retrieval.history_features (the "
                              "default), retrieval.user_embedding or retrieval.user_features to true")
        scale = self.data.rating_scale
        if scale and (len(scale) != 2 or not all(math.isfinite(v) for v in scale) or scale[0] >= scale[1]):
            raise ConfigError(f"data.rating_scale must be two finite numbers LOW-HIGH with LOW below HIGH "
                              f"(such as 0-10 or 0.5-5), got {scale}")
        return self


def _declared() -> dict[str, Setting]:
    """Every setting's declaration, by dotted key (``data.csv_user_column``), in file order."""
    return {f"{section.name}.{entry.name}": entry.metadata.get("setting", Setting())
            for section in dataclasses.fields(PipelineConfig) for entry in dataclasses.fields(section.default_factory())}


#: Every setting's :class:`Setting`, by dotted key: the one place each is declared is its field.
SETTINGS: dict[str, Setting] = _declared()
#: Views of :data:`SETTINGS`: the settings with a fixed set of values, whole-number ranges (both ends
#: allowed) and real-number ranges ((low, high, whether high is allowed); low is allowed unless the
#: key is in ``_ABOVE_LOW``).
CHOICES = {key: spec.choices for key, spec in SETTINGS.items() if spec.choices}
INT_RANGES = {key: spec.whole for key, spec in SETTINGS.items() if spec.whole}
_INTERVALS = {key: spec.interval() for key, spec in SETTINGS.items() if spec.real}
FLOAT_RANGES = {key: (low, high, high_allowed) for key, (low, high, _, high_allowed) in _INTERVALS.items()}
_ABOVE_LOW = {key for key, (_, _, low_allowed, _) in _INTERVALS.items() if not low_allowed}


def python_keywords() -> dict[str, str]:
    """:func:`tfrs_pipeline.train`'s keyword of each setting that has one (``{"user_col": "data.csv_user_column"}``)."""
    return {spec.python: key for key, spec in SETTINGS.items() if spec.python}


def option_hints(python: bool) -> dict[str, str]:
    """How the command line (``--rating-col``) or :func:`tfrs_pipeline.train` (``rating_col=``) spells each
    choice a message may point to, from the settings' declarations (:data:`~tfrs_pipeline.config.SETTINGS`)."""

    def spell(key: str, cli_value: str = "", python_value: str = "") -> str:
        spec = SETTINGS[key]
        if not python:
            return f"{spec.cli} {cli_value}".rstrip()
        return f"{spec.python}={python_value}" if spec.python else f'settings={{"{key}": {python_value}}}'

    return {"user": spell("data.csv_user_column"), "item": spell("data.csv_item_column"),
            "rating": spell("data.csv_rating_column"), "title": spell("data.csv_title_column"),
            "implicit": spell("data.implicit", python_value="True"),
            "scale": spell("data.rating_scale", "LOW-HIGH (e.g. 0-10)", "(LOW, HIGH)"),
            "items_header": "" if python else f", or {SETTINGS['data.items_columns'].cli} for a file without a header",
            "skip": spell("data.on_bad_rows", "skip", '"skip"'), "sep": spell("data.sep", python_value="SEP"),
            "columns": spell("data.columns", "user_id,item_id,rating,timestamp",
                             '["user_id", "item_id", "rating", "timestamp"]') + " (in order)",
            "date_format": spell("data.date_format")}
