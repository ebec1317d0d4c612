"""Using an exported model from Python: :class:`Recommender`, over a loaded SavedModel.

It imports TensorFlow and nothing of TFRS or of the training code, so a server or a
notebook that only serves loads no training machinery. The surface follows ``implicit``'s:
``recommend``, ``similar_items``, ``predict_ratings``, ``retrieve``, ``explain``, ``find_movie``, ``catalog``.
Its arguments are checked by :mod:`~tfrs_pipeline.arguments`; the signatures it calls are named in
:mod:`~tfrs_pipeline.signatures`.

Longer than 500 lines: one class, a method per signature, each with its documented arguments
and a runnable example.

Examples:
    >>> from tfrs_pipeline import Recommender
    >>> model = Recommender.load(model_path)  # saved_models/NAME: its newest version
    >>> top = model.recommend("42", k=10)  # a DataFrame, a row per movie
    >>> len(top), list(top.columns[:4])
    (10, ['user_id', 'rank', 'movie_id', 'title'])
    >>> len(model.similar_items(model.find_movie(model.title_of("50")), k=5))
    5
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrs_pipeline import arguments as arg
from tfrs_pipeline import signatures as named
from tfrs_pipeline.errors import ArgumentError, CappedWarning, ModelError, UnknownMoviesWarning
from tfrs_pipeline.ids import as_str, catalog_positions
from tfrs_pipeline.model_dir import ModelDir
from tfrs_pipeline.signatures import (
    EXPLAINED_COLUMNS,
    RANKED_COLUMNS,
    RATED_COLUMNS,
    RETRIEVED_COLUMNS,
    SIMILAR_COLUMNS,
    recommend_signature,
)

#: One id: a string, or a whole number (written as the string of its digits).
Id = str | int
#: Ids as callers pass them: a list (or array, or Series) of strings or numbers, one per row.
Ids = Sequence[Id] | np.ndarray | pd.Series

def load_saved_model(path: str | Path):
    """``tf.saved_model.load``, registering ScaNN's ops first when the model was exported with them.

    Raises:
        ModelError: the SavedModel is unreadable (damaged files), or needs ScaNN and it is missing.
    """
    try:
        return _load_with_scann(path)
    except ModelError:
        raise
    except Exception as error:  # a damaged SavedModel fails in protobuf, in TensorFlow's readers or in Keras
        first = (str(error).strip().splitlines() or [""])[0][:200]
        raise ModelError(f"{path}: the SavedModel cannot be loaded ({type(error).__name__}: {first})") from None


def _load_with_scann(path: str | Path):
    try:
        return tf.saved_model.load(str(path))
    except (RuntimeError, tf.errors.NotFoundError) as error:
        if "Scann" not in str(error):
            raise
        try:
            import scann  # noqa: F401  (registers the ScaNN TensorFlow ops)
        except ImportError:
            raise ModelError(f"{path} was exported with a ScaNN index: install ScaNN (pip install 'scann[tf]') "
                             "to load it") from None
        return tf.saved_model.load(str(path))


def _decoded(array: np.ndarray) -> np.ndarray:
    """String tensors' bytes as Python strings (object arrays); other arrays unchanged."""
    if array.dtype.kind in "OS":
        return as_str(array)
    return array


class Recommender:
    """An exported two-stage model, called through its signatures.

    Every method takes one id or a list of them (plain Python, NumPy or pandas), checks its
    arguments before TensorFlow sees them, batches large inputs, and returns a
    ``pandas.DataFrame`` with a row per answer. ``arrays=True`` returns the signature's outputs
    instead: a dict of NumPy arrays [rows, k], strings decoded. A ``k`` above what there is
    (the candidates retrieval hands the ranker, or the catalog) is capped with a
    :class:`~tfrs_pipeline.errors.CappedWarning`, never silently.

    Args:
        model: the loaded pipeline SavedModel.
        model_dir: its version folder.
        skipped: why newer versions were passed over, one line each (set by :meth:`load`).

    Examples:
        >>> model = Recommender.load(model_path)  # saved_models/NAME, trained by `tfrs-pipeline train`
        >>> top = model.recommend("5", k=3)
        >>> len(top), bool(top["known_user"].all())
        (3, True)
        >>> out = model.recommend(["5"], k=3, arrays=True)
        >>> out["movie_ids"].shape, out["titles"].shape, bool(out["known_user"][0])
        ((1, 3), (1, 3), True)
    """

    def __init__(self, model: tf.Module, model_dir: ModelDir, skipped: list[str] | None = None) -> None:
        self.model = model
        self.model_dir = model_dir
        self.signatures = dict(model.signatures)
        #: Why newer versions were passed over (damaged files), one line each; empty normally.
        self.skipped = list(skipped or [])
        self._catalog: pd.DataFrame | None = None

    @classmethod
    def load(cls, path: str | Path | ModelDir) -> Recommender:
        """Loads ``saved_models/NAME`` (its newest version that loads) or ``saved_models/NAME/VERSION``.

        Each version is checked against its checksum manifest first. When the newest version of
        a base is damaged the next newest is used, and :attr:`skipped` says why.

        Args:
            path: a model base, one of its version folders, or a :class:`ModelDir`.

        Returns:
            The recommender over the version that loaded.

        Raises:
            ModelError: no exported model there, the version asked for is damaged, no version
                loads, or ScaNN is needed and missing.
        """
        if not isinstance(path, (str, Path, ModelDir)):
            raise ArgumentError(f"path must be a model folder (saved_models/NAME or saved_models/NAME/VERSION), got "
                                f"{arg.shown(path)}")
        candidates = [path] if isinstance(path, ModelDir) else ModelDir.candidates(path)
        skipped = []
        for model_dir in candidates:
            try:
                model_dir.verify()
                return cls(load_saved_model(model_dir.path), model_dir, skipped)
            except ModelError as error:
                if len(candidates) == 1:
                    raise
                skipped.append(f"skipped version {model_dir.version}: {error}")
        raise ModelError(f"{path}: no version loads ({'; '.join(skipped)})")

    @property
    def path(self) -> Path:
        """The version folder it was loaded from."""
        return self.model_dir.path

    @property
    def implicit(self) -> bool:
        """True when the model was trained on implicit feedback: ``predicted_ratings`` are relevance (0 to 1)."""
        return bool(self.model.implicit.numpy())

    @property
    def name(self) -> str:
        """The model's name (``NAME`` of ``saved_models/NAME``)."""
        return self.model_dir.name

    @property
    def version(self) -> int | None:
        """The version it was loaded from."""
        return self.model_dir.version

    @property
    def metrics(self) -> dict:
        """Every figure its training run measured (the version's ``metrics.json``)."""
        return self.model_dir.read_metrics()

    # -- calling signatures -----------------------------------------------------------------------

    def call(self, signature_name: str, batch_size: int = 4096, *, keep: tuple[str, ...] | None = None,
             positions_in: pd.Index | None = None, **inputs) -> dict[str, np.ndarray]:
        """Calls a signature; inputs with a batch axis are sent ``batch_size`` rows at a time.

        Args:
            keep: the outputs to return (default: all). Over many rows the others cost memory:
                the titles of 138k users' top 100 are 13.8M strings.
            positions_in: string outputs come back as positions (int32, -1 where absent) in this
                index, converted batch by batch, instead of as strings (``movie_ids`` in the
                catalog: 4 bytes a movie rather than a Python string).

        Raises:
            ModelError: the model has no such signature, an input is missing or unexpected, or
                ``keep`` names an output it does not have.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ArgumentError(f"batch_size must be a whole number from 1 up, got {arg.shown(batch_size)}")
        function = self._signature(signature_name)
        specs = function.structured_input_signature[1]
        missing, extra = sorted(set(specs) - set(inputs)), sorted(set(inputs) - set(specs))
        if missing or extra:
            raise ModelError(f"signature {signature_name!r} takes inputs {sorted(specs)}; missing {missing}, "
                             f"unexpected {extra}")
        unknown = sorted(set(keep or ()) - set(function.structured_outputs))
        if unknown:
            raise ModelError(f"signature {signature_name!r} has outputs {sorted(function.structured_outputs)}, "
                             f"not {unknown}")
        scalars = {name: tf.constant(arg.count(inputs[name], name), spec.dtype)
                   for name, spec in specs.items() if spec.shape.rank == 0}  # k: the only scalar input
        batched = {name: np.asarray(inputs[name]) for name, spec in specs.items() if spec.shape.rank != 0}
        for name, value in batched.items():
            if value.ndim != specs[name].shape.rank:
                raise ArgumentError(f"{name} must have {specs[name].shape.rank} axes (shape {specs[name].shape}), got "
                                    f"an array of shape {value.shape}")
        lengths = {len(value) for value in batched.values()}
        if len(lengths) > 1:
            raise ArgumentError(f"the inputs {sorted(batched)} must have one row each per request, got lengths "
                                f"{sorted(len(value) for value in batched.values())}")
        rows = len(next(iter(batched.values()))) if batched else 0
        outputs: dict[str, list[np.ndarray]] = {}
        for start in range(0, max(rows, 1), batch_size):
            sliced = {name: tf.constant(_as_input(value[start : start + batch_size], specs[name].dtype))
                      for name, value in batched.items()}
            for name, tensor in function(**sliced, **scalars).items():
                if keep is None or name in keep:
                    values = tensor.numpy()
                    if positions_in is not None and tensor.dtype == tf.string:
                        values = catalog_positions(values, positions_in)
                    outputs.setdefault(name, []).append(values)
        return {name: _decoded(np.concatenate(parts)) for name, parts in outputs.items()}

    def _signature(self, name: str):
        if name not in self.signatures:
            raise ModelError(f"{self.path}: no signature {name!r}; this model has {', '.join(sorted(self.signatures))}")
        return self.signatures[name]

    def recommend(self, user_ids: Id | Ids, k: int = 10, exclude_seen: bool = True,
                  exclude: Sequence[Ids] | None = None, *, history: Sequence[Ids] | None = None,
                  allow_unknown: bool = False, arrays: bool = False) -> pd.DataFrame:
        """The two-stage top ``k`` for each user, best first, from what the user did.

        Args:
            user_ids: one user id or a list of them, as in the training data. An id the model
                never saw is an error naming it, unless ``allow_unknown`` or a ``history`` for it
                is given (the command line and ``GET /recommend`` answer the same way).
            k: how many movies per user (at most the candidates retrieval hands the ranker).
            exclude_seen: leave out the movies each user rated in training (and in ``history``).
            exclude: movie ids never to return, one list per user (out of stock, already shown);
                the other movies keep their order.
            history: movies each user rated or watched since training, one list per user: they
                join what the model knows of the user, change the list and are left out of it,
                without retraining (an unknown id with a history is a visitor with that history).
            allow_unknown: give a user the model never saw (without a history) what the model
                serves such users, well-rated popular movies (``known_user`` False), instead of an error.
            arrays: return the signature's arrays instead of a table (see below).

        Returns:
            A table with a row per recommendation: ``user_id``, ``rank`` (1 is best),
            ``movie_id``, ``title``, ``ranker_score`` (the list ranker's score, which orders the
            list: not a rating), ``predicted_rating`` (the rating model's; a relevance for
            implicit feedback), ``retrieval_score`` and ``known_user``. With ``arrays=True``:
            ``movie_ids``, ``titles``, ``scores`` (the ranker's), ``predicted_ratings``,
            ``retrieval_scores`` [users, k] and ``known_user`` [users].

        Examples:
            >>> top = model.recommend("42", k=10)  # model = Recommender.load("saved_models/demo")
            >>> len(top), top["rank"].tolist()[:3]
            (10, [1, 2, 3])
            >>> list(top.columns)
            ['user_id', 'rank', 'movie_id', 'title', 'ranker_score', 'predicted_rating', 'retrieval_score', 'known_user']
            >>> model.recommend(["5", "6"], k=2, arrays=True)["predicted_ratings"].shape
            (2, 2)
            >>> before = model.recommend("5", k=5)["movie_id"].tolist()
            >>> after = model.recommend("5", k=5, history=[before[:1]])["movie_id"].tolist()  # rated the first since
            >>> before[0] in after
            False
        """
        users, k = arg.ids(user_ids, "user_ids"), arg.count(k, "k")
        exclude_seen, allow_unknown = arg.flag(exclude_seen, "exclude_seen"), arg.flag(allow_unknown, "allow_unknown")
        if history is not None:
            if not exclude_seen:
                raise ArgumentError("history= works with exclude_seen=True (the recommend_with_history signature)")
            movies = arg.padded(arg.id_lists(history, "history", len(users), "user"))
            excluded = arg.padded(arg.id_lists(exclude, "exclude", len(users), "user")) if exclude is not None else \
                np.full((len(users), 1), "", dtype=object)
            signature = recommend_signature(user=True, history=True, exclude=exclude is not None)
            out = self.call(signature, user_id=users, movie_ids=movies, exclude_movie_ids=excluded, k=k)
        elif exclude is not None:
            if not exclude_seen:
                raise ArgumentError("exclude= works with exclude_seen=True (the recommend_excluding signature)")
            lists = arg.id_lists(exclude, "exclude", len(users), "user")
            signature = recommend_signature(user=True, history=False, exclude=True)
            out = self.call(signature, user_id=users, exclude_movie_ids=arg.padded(lists), k=k)
        else:
            signature = recommend_signature(user=True, history=False, exclude=False, exclude_seen=exclude_seen)
            out = self.call(signature, user_id=users, k=k)
        if not allow_unknown:
            unknown = ~out["known_user"] & (out["history_known"] == 0 if "history_known" in out else True)
            if unknown.any():
                names = ", ".join(repr(str(user)) for user in np.asarray(users)[unknown][:5])
                more = f" and {int(unknown.sum()) - 5:,} more" if unknown.sum() > 5 else ""
                raise ArgumentError(f"user_ids: {names}{more} not in the model's training data (ids are matched as "
                                    "text, exactly as in the training data); allow_unknown=True gives such users "
                                    "well-rated popular movies, history= scores a visitor from their movies")
        _warn_if_capped(out, k, _CANDIDATES)
        return out if arrays else _frame(out, {"user_id": users}, RANKED_COLUMNS, ["known_user"])

    def recommend_from_history(self, histories: Sequence[Ids], k: int = 10, *,
                               arrays: bool = False) -> pd.DataFrame:
        """Top ``k`` for visitors the model never saw, from the movies each just rated or watched.

        Args:
            histories: one visitor's movie ids, or one list per visitor (lengths may differ).
            k: how many movies per visitor.
            arrays: return the signature's arrays instead of a table.

        Returns:
            A table with a row per recommendation: ``visitor`` (the list's position in
            ``histories``), ``rank``, ``movie_id``, ``title``, ``ranker_score``,
            ``predicted_rating``, ``retrieval_score`` and ``history_known`` (how many of the
            visitor's movies the model knows). With ``arrays=True``: ``movie_ids``, ``titles``,
            ``scores``, ``predicted_ratings``, ``retrieval_scores`` [visitors, k] and
            ``history_known`` [visitors].

        Examples:
            >>> top = model.recommend_from_history([["1", "2"], ["no such movie"]], k=4)  # warns of the second
            >>> top.groupby("visitor")["history_known"].first().tolist()
            [2, 0]
        """
        lists = arg.id_lists(histories, "histories")
        out = self.call(named.RECOMMEND_FROM_HISTORY, movie_ids=arg.padded(lists), k=arg.count(k, "k"))
        lost = [i for i, movies in enumerate(lists) if movies and out["history_known"][i] == 0]
        if lost:
            shown = ", ".join(map(repr, lists[lost[0]][:3]))
            warnings.warn(f"{len(lost):,} visitor(s) have no movie the model knows (visitor {lost[0]}: {shown}): their "
                          "lists are well-rated popular movies. Ids are matched as text, exactly as in the training "
                          "data (leading zeros included)", UnknownMoviesWarning, stacklevel=2)
        _warn_if_capped(out, k, _CANDIDATES)
        return out if arrays else _frame(out, {"visitor": np.arange(len(lists))}, RANKED_COLUMNS, ["history_known"])

    def retrieve(self, user_ids: Id | Ids, k: int = 100, *, arrays: bool = False) -> pd.DataFrame:
        """Retrieval alone, seen movies excluded.

        Args:
            user_ids: one user id or a list of them, as in the training data.
            k: how many candidates per user.
            arrays: return the signature's arrays instead of a table.

        Returns:
            A table with a row per candidate: ``user_id``, ``rank``, ``movie_id``, ``title``,
            ``retrieval_score`` and ``known_user``. With ``arrays=True``: ``movie_ids``,
            ``titles``, ``retrieval_scores`` [users, k] and ``known_user`` [users].

        Examples:
            >>> model.retrieve("42", k=30)["rank"].tolist()[-3:]
            [28, 29, 30]
        """
        users = arg.ids(user_ids, "user_ids")
        out = self.call(named.RETRIEVE, user_id=users, k=arg.count(k, "k"))
        _warn_if_capped(out, k, "movies in the catalog")
        return out if arrays else _frame(out, {"user_id": users}, RETRIEVED_COLUMNS, ["known_user"])

    @property
    def ratings_signature(self) -> str:
        """The signature that predicts ratings of given movies: ``predict_ratings`` (``rank`` in a model
        exported before it was renamed)."""
        return named.PREDICT_RATINGS if named.PREDICT_RATINGS in self.signatures else named.RANK

    def rank(self, user_ids: Id | Ids, movie_ids: Sequence[Ids], *, arrays: bool = False) -> pd.DataFrame:
        """The former name of :meth:`predict_ratings`, which it calls: it returned predicted ratings in the
        order given, not a ranking. Warns (``FutureWarning``); to be removed in the next release."""
        warnings.warn("Recommender.rank is now Recommender.predict_ratings (it predicts ratings, in the order "
                      "given); rank will be removed in the next release", FutureWarning, stacklevel=2)
        return self.predict_ratings(user_ids, movie_ids, arrays=arrays)

    def predict_ratings(self, user_ids: Id | Ids, movie_ids: Sequence[Ids], *, arrays: bool = False) -> pd.DataFrame:
        """Predicted ratings of the movies given for each user, in the order given.

        Args:
            user_ids: one user id or a list of them [users].
            movie_ids: one user's movie ids, or one list per user [users, n] (as many for each).
            arrays: return the signature's arrays instead of a table.

        Returns:
            A table with a row per user and movie, in the order given: ``user_id``, ``movie_id``,
            ``title`` ("" for a movie the model does not know), ``predicted_rating`` and
            ``known_movie``. With ``arrays=True``: ``predicted_ratings`` and ``known_movie``
            [users, n].

        Examples:
            >>> model.predict_ratings("5", ["1", "2", "3"])["predicted_rating"].shape
            (3,)
            >>> model.predict_ratings(["5"], [["1", "2", "3"]], arrays=True)["predicted_ratings"].shape
            (1, 3)
        """
        users = arg.ids(user_ids, "user_ids")
        lists = arg.id_lists(movie_ids, "movie_ids", len(users), "user")
        if len({len(row) for row in lists}) > 1:
            raise ArgumentError(f"movie_ids must hold as many movies for every user, got lists of "
                                f"{sorted({len(row) for row in lists})} movies")
        movies = arg.padded(lists)
        out = self.call(self.ratings_signature, user_id=users, movie_ids=movies)
        if arrays:
            return out
        titles = self.catalog.set_index("movie_id")["title"]
        table = pd.DataFrame({"user_id": np.repeat(users, movies.shape[1]), "movie_id": movies.reshape(-1)})
        table["title"] = table["movie_id"].map(titles).fillna("").astype(str)
        table["predicted_rating"] = out["predicted_ratings"].reshape(-1)
        table["known_movie"] = out["known_movie"].reshape(-1)
        return table

    def rated_movies(self, user_ids: Id | Ids, k: int = 10, *, arrays: bool = False) -> pd.DataFrame:
        """Each user's highest-rated training movies (at most 10), best first: what to show beside their list.

        Args:
            user_ids: one user id or a list of them, as in the training data.
            k: how many movies per user (at most 10 are stored).
            arrays: return the signature's arrays instead of a table.

        Returns:
            A table with a row per rated movie: ``user_id``, ``rank``, ``movie_id``, ``title``,
            ``rating`` (as rated; the most recent first among equal ratings) and ``known_user``
            (an unknown user has no rows). With ``arrays=True``: ``movie_ids``, ``titles``,
            ``ratings`` [users, min(k, 10)] and ``known_user`` [users].

        Raises:
            ModelError: the model was exported before this signature existed.

        Examples:
            >>> rated = model.rated_movies("42", k=3)
            >>> len(rated), rated["rating"].is_monotonic_decreasing
            (3, True)
        """
        users = arg.ids(user_ids, "user_ids")
        out = self.call(named.RATED_MOVIES, user_id=users, k=arg.count(k, "k"))
        return out if arrays else _frame(out, {"user_id": users}, RATED_COLUMNS, ["known_user"])

    def similar_items(self, movie_ids: Id | Ids, k: int = 10, *, arrays: bool = False) -> pd.DataFrame:
        """The ``k`` movies closest to each movie (cosine of candidate-tower embeddings), never the movie itself.

        Args:
            movie_ids: one movie id or a list of them [movies].
            k: how many similar movies per movie.
            arrays: return the signature's arrays instead of a table.

        Returns:
            A table with a row per similar movie: ``of_movie_id`` (the movie asked about),
            ``rank``, ``movie_id``, ``title``, ``similarity`` (cosine, -1 to 1) and
            ``known_movie``. With ``arrays=True``: ``movie_ids``, ``titles``, ``scores``
            [movies, k] and ``known_movie`` [movies].

        Examples:
            >>> similar = model.similar_items("1", k=3)
            >>> len(similar), "1" in similar["movie_id"].tolist()
            (3, False)
        """
        movies = arg.ids(movie_ids, "movie_ids")
        out = self.call(named.SIMILAR_MOVIES, movie_id=movies, k=arg.count(k, "k"))
        _warn_if_capped(out, k, "other movies in the catalog")
        return out if arrays else _frame(out, {"of_movie_id": movies}, SIMILAR_COLUMNS, ["known_movie"])

    def explain(self, user_id: Id, movie_ids: Id | Ids, k: int = 3, *, arrays: bool = False) -> pd.DataFrame:
        """For one user and each of ``movie_ids``: the ``k`` rated movies that contribute most to it.

        Args:
            user_id: one user id.
            movie_ids: the movies to explain (one id or a list), such as the user's recommendations.
            k: how many rated movies per explained movie.
            arrays: return the signature's arrays instead of a table.

        Returns:
            A table with a row per reason: ``user_id``, ``movie_id`` (the movie explained),
            ``rank``, ``because_movie_id`` and ``because_title`` (a movie the user rated),
            ``contribution`` (its term of the list ranker's item-item score) and ``share`` (of
            the positive total); a movie nothing explains has no rows. With ``arrays=True``:
            ``movie_ids``, ``titles``, ``contributions`` and ``shares`` [movies, k], empty
            slots "".

        Examples:
            >>> top = model.recommend("5", k=2)
            >>> reasons = model.explain("5", top["movie_id"], k=3)
            >>> set(reasons["movie_id"]) <= set(top["movie_id"]), bool(reasons["rank"].max() <= 3)
            (True, True)
        """
        if not arg.is_id(user_id):
            raise ArgumentError(f"user_id must be one user id, got {arg.shown(user_id)}")
        user, movies = arg.id_text(user_id, "user_id"), arg.ids(movie_ids, "movie_ids")
        out = self.call(named.EXPLAIN, user_id=np.full(len(movies), user, dtype=object), movie_id=movies,
                        k=arg.count(k, "k"))
        if arrays:
            return out
        return _frame(out, {"user_id": np.full(len(movies), user, dtype=object), "movie_id": movies}, EXPLAINED_COLUMNS, [])

    # -- the catalog --------------------------------------------------------------------------------

    @property
    def catalog(self) -> pd.DataFrame:
        """Every movie the model can recommend: ``movie_id`` and ``title``, in catalog order."""
        if self._catalog is None:
            self._catalog = pd.DataFrame({"movie_id": as_str(self.model.catalog_ids.numpy()),
                                          "title": as_str(self.model.titles.numpy())})
        return self._catalog

    def title_of(self, movie_id: str) -> str:
        """The title of a catalog movie ("" when unknown).

        Args:
            movie_id: a movie id.

        Returns:
            Its title.
        """
        match = self.catalog.loc[self.catalog["movie_id"] == str(movie_id), "title"]
        return str(match.iloc[0]) if len(match) else ""

    def find_movie(self, text: str) -> str:
        """A movie id from an id, an exact title, or a unique part of a title (case-insensitive).

        Args:
            text: what the user typed.

        Returns:
            The movie's id.

        Examples:
            >>> model.find_movie(model.title_of("7")) == "7"
            True

        Raises:
            ModelError: no movie matches, or several do (the message lists the first few with their ids).
        """
        text = arg.id_text(text, "movie")
        ids, titles = self.catalog["movie_id"], self.catalog["title"]
        if (ids == text).any():
            return text
        lowered = titles.str.lower()
        matches = np.flatnonzero(lowered == text.lower())
        if not len(matches):
            matches = np.flatnonzero(lowered.str.contains(text.lower(), regex=False))
        if len(matches) == 1:
            return str(ids.iloc[matches[0]])
        if not len(matches):
            raise ModelError(f"no movie with id or title {text!r} in the model's catalog ({len(ids):,} movies)")
        shown = "; ".join(f"{ids.iloc[i]}: {titles.iloc[i]}" for i in matches[:5])
        raise ModelError(f"{len(matches)} movies match {text!r} ({shown}{'; ...' if len(matches) > 5 else ''}); "
                         "give the id")

    def known_users(self) -> list[str]:
        """The users the model was trained on (its user vocabulary).

        Returns:
            Their ids, as strings.
        """
        return self.model_dir.read_vocabulary("user_ids")


#: What caps ``k`` for the two-stage lists.
_CANDIDATES = "candidates retrieval hands the ranker (serving.num_candidates at training)"


def _warn_if_capped(out: dict[str, np.ndarray], k: int, limit: str) -> None:
    """A :class:`CappedWarning` when the answer has fewer columns than ``k`` asked for, or a row fewer
    movies (the rest empty slots: seen or excluded movies are never returned): never a silent cut."""
    got = out["movie_ids"].shape[1]
    if got < k:
        warnings.warn(f"k={k} is more than the {got:,} {limit}: {got:,} per row", CappedWarning, stacklevel=3)
        return
    filled = (out["movie_ids"] != "").sum(axis=1) if got else np.zeros(0, int)
    if len(filled) and filled.min() < k:
        short = int((filled < k).sum())
        warnings.warn(f"k={k}: {short:,} row(s) have fewer movies left once seen and excluded movies are left out "
                      f"(the fewest {int(filled.min()):,})", CappedWarning, stacklevel=3)


def _frame(out: dict[str, np.ndarray], keys: dict[str, np.ndarray], columns: dict[str, str],
           per_row: list[str]) -> pd.DataFrame:
    """A signature's [rows, k] outputs as a long table: a row per filled slot, keys and ``per_row`` repeated.

    Slots past the movies there are (an empty movie id) are left out, so a user who has seen
    nearly everything gets fewer rows, never blank ones.
    """
    first = next(iter(columns))
    rows, width = out[first].shape
    table = {name: np.repeat(np.asarray(values), width) for name, values in keys.items()}
    table["rank"] = np.tile(np.arange(1, width + 1), rows)
    table.update({column: out[name].reshape(-1) for name, column in columns.items()})
    table.update({name: np.repeat(out[name], width) for name in per_row})
    frame = pd.DataFrame(table)
    return frame[frame[columns[first]] != ""].reset_index(drop=True)


def _as_input(values: np.ndarray, dtype: tf.DType) -> np.ndarray:
    return values.astype(str) if dtype == tf.string else values
