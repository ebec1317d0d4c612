"""Evaluation of an exported model: every number of ``metrics.json``, measured on what ships.

The metric definitions live in :mod:`tfrs_pipeline.metrics`; this module calls the
exported SavedModels (through :class:`tfrs_pipeline.recommender.Recommender`) on the recorded
test split, beside the baselines of :mod:`tfrs_pipeline.baselines`:

* ``factorized_top_k/top_K``: TFRS ``FactorizedTopK`` top-K accuracy from the exported
  towers, seen (training) movies *not* excluded.
* ``excluding_seen``: the user's training movies excluded; ``hit_rate_at_K`` is the share
  of test ratings whose movie is in the user's top K (the "recall" of
  ``../shared/README.md``), ``recall_at_K`` the per-user recall (hits / the user's test
  movies, averaged over users), ``capped_recall_at_K`` the same over min(K, test movies),
  and ``ndcg_at_10`` binary-relevance NDCG of the top 10, averaged over users.
* ``ranking/rmse``: RMSE of predicted ratings on every test rating (not measured on implicit
  feedback, where there are no ratings: ``ranking/note`` says so).
* ``ablation``: the top 10 of retrieval alone, of the two stages with the rating blend
  (retrieval logit + w * predicted rating), of the two stages as served (the list ranker), of EASE and of
  most-popular, each with the same numbers, on the same split; of EASE with the session kernel too
  where the ranker's item-item model has it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrs_pipeline import signatures as named
from tfrs_pipeline.baselines import BiasedMatrixFactorization, ease_recommender, most_popular_from_training, movie_mean
from tfrs_pipeline.errors import CappedWarning
from tfrs_pipeline.features.vocabulary import Vocabularies
from tfrs_pipeline.ids import distinct_ids, id_positions, rows_per_block, users_of
from tfrs_pipeline.metrics import TOP_KS, recall_and_ndcg, rmse, top_k_report
from tfrs_pipeline.model_dir import METRICS, ModelDir
from tfrs_pipeline.ranking.blend import blend_top_k
from tfrs_pipeline.ranking.neighbours import EASE_MAX_CATALOG, Sessions
from tfrs_pipeline.recommender import Recommender, load_saved_model
from tfrs_pipeline.retrieval.index import SeenMovies

#: The ablation's row of EASE with the session kernel (the list ranker's item-item source alone).
SESSION_EASE = "EASE with sessions (item-item source)"

#: Users per call of the signatures that rank from histories (the two stages, predicted ratings,
#: visitors): the tensors a call holds stay with the process (see docs/training.md, Memory), and
#: calls of 1,024 users of a 20M-rating model left it 3.0 GiB larger, calls of 256 0.8 GiB (and faster).
USERS_PER_RANKING_CALL = 256


def factorized_top_k_of_export(model_dir: ModelDir, test: pd.DataFrame, catalog_ids: np.ndarray,
                               ks=TOP_KS, batch: int = 4096) -> dict[str, float]:
    """TFRS ``FactorizedTopK`` on the test split, computed from the exported towers (seen movies kept).

    A K above the catalog size is measured at the whole catalog (every movie is in such a top K).
    ``batch`` ratings are scored at once, fewer on catalogs too big for ``batch`` x catalog scores.
    """
    import tensorflow_recommenders as tfrs

    for stage in ("query_tower", "candidate_tower"):
        model_dir.verify(stage)
    query_tower = load_saved_model(model_dir.stage("query_tower")).signatures["serving_default"]
    candidate_tower = load_saved_model(model_dir.stage("candidate_tower")).signatures["serving_default"]
    catalog = tf.constant(catalog_ids.astype(str))
    embeddings = tf.concat([candidate_tower(movie_id=catalog[i : i + batch])["embeddings"]
                            for i in range(0, len(catalog_ids), batch)], axis=0)
    measured = sorted({min(k, len(catalog_ids)) for k in ks})
    scored = rows_per_block(len(catalog_ids), batch)
    index = tfrs.layers.factorized_top_k.BruteForce(k=max(measured))
    index.index(embeddings, catalog)
    metric = tfrs.metrics.FactorizedTopK(candidates=index, ks=measured)
    # One query per test user, gathered for each of their ratings: the query tower pools a user's
    # whole history, so per rating it would repeat that work (4M ratings, 138k users at 20M).
    users = users_of(test)
    queries = tf.concat([query_tower(user_id=tf.constant(users[i : i + batch]))["embeddings"]
                         for i in range(0, len(users), batch)], axis=0)
    rows = id_positions(pd.Index(users), test["user_id"])
    movies = test["movie_id"].astype(str).to_numpy()
    for start in range(0, len(test), scored):
        movie_batch = tf.constant(movies[start : start + scored])
        metric.update_state(tf.gather(queries, rows[start : start + scored]),
                            candidate_tower(movie_id=movie_batch)["embeddings"], true_candidate_ids=movie_batch)
    values = dict(zip(measured, (float(value) for value in metric.result())))
    return {f"top_{k}": values[min(k, len(catalog_ids))] for k in ks}


def recorded_sessions(model_dir: ModelDir) -> Sessions | None:
    """The session kernel of the exported list ranker's item-item model, as its ``metrics.json`` records
    it; None where it has none, or where the version has no ``metrics.json``."""
    if not (model_dir.path / METRICS).is_file():
        return None
    return Sessions.from_record((model_dir.read_metrics().get("training") or {}).get("item_item"))


def evaluate_export(model: Recommender | ModelDir | str, train: pd.DataFrame, test: pd.DataFrame,
                    rating_scale: tuple[float, float], *, mf_factors: int = 32, mf_regularization: float = 15.0,
                    with_ease: bool = True, sessions: Sessions | None = None,
                    log: Callable[[str], None] = print) -> dict:
    """Every number of ``metrics.json``, measured on the exported SavedModels (what ships).

    Args:
        model: the exported model (a :class:`~tfrs_pipeline.recommender.Recommender`, a version
            folder or its path).
        train: the training ratings (their movies are excluded from each user's lists).
        test: the held-out ratings the figures are measured on.
        rating_scale: lowest and highest rating, for the baselines' predictions.
        mf_factors: the matrix factorization baseline's factors.
        mf_regularization: its L2 penalty.
        with_ease: add the EASE baseline to the ablation, fitted over the movies rated in ``train``
            (skipped above :data:`~tfrs_pipeline.ranking.neighbours.EASE_MAX_CATALOG` of them).
        sessions: the session kernel of the list ranker's item-item model, where it has one: EASE
            with it is added to the ablation beside EASE (the ranker's item-item source alone).
        log: where progress lines go.

    Examples:
        >>> from tfrs_pipeline.model_dir import ModelDir
        >>> split = ModelDir.resolve(model_path).recorded_split()[1]
        >>> metrics = evaluate_export(model_path, split.train, split.test, (1, 5), with_ease=False, log=lambda *_: None)
        >>> sorted(metrics["ablation"])
        ['most popular', 'retrieval alone', 'two-stage, as served', 'two-stage, rating blend']

    Returns:
        ``factorized_top_k``, ``excluding_seen``, ``ranking``, ``pipeline``, ``ablation`` and
        ``baselines`` (``most_popular``, ``matrix_factorization``) with the same keys where they apply.
    """
    recommender = model if isinstance(model, Recommender) else Recommender.load(model)
    catalog_ids = recommender.catalog["movie_id"].to_numpy()
    users = users_of(test)
    block = rows_per_block(len(catalog_ids), 1024)  # users per call: each scores the whole catalog
    test_users = test["user_id"].astype(str).to_numpy()
    test_movies = test["movie_id"].astype(str).to_numpy()

    log("evaluating: factorized top-K (TFRS definition) from the exported towers")
    metrics: dict = {"factorized_top_k": factorized_top_k_of_export(recommender.model_dir, test, catalog_ids)}

    log("evaluating: recall and NDCG with seen movies excluded, retrieval only and two-stage")
    # Only the ids are kept, and only while they are scored (138k users' top 100 at 20M ratings).
    # Ranked lists are kept as catalog positions: 4 bytes a movie, not a Python string.
    catalog = pd.Index(catalog_ids.astype(str))
    retrieved = recommender.call(named.RETRIEVE, block, user_id=users, k=100, keep=("movie_ids",),
                                 positions_in=catalog)["movie_ids"]
    metrics["excluding_seen"] = recall_and_ndcg(users, retrieved, test, catalog=catalog)
    del retrieved
    served = recommender.call(named.SERVING_DEFAULT, USERS_PER_RANKING_CALL, user_id=users, k=10, keep=("movie_ids",),
                              positions_in=catalog)["movie_ids"]
    metrics["pipeline"] = {**recall_and_ndcg(users, served, test, ks=(10,), catalog=catalog),
                           "rating_weight": float(recommender.model.rating_weight.numpy())}
    implicit = recommender.implicit
    blend = "two-stage, relevance blend" if implicit else "two-stage, rating blend"
    metrics["ablation"] = {"retrieval alone": _at_10(metrics["excluding_seen"]),
                           blend: recall_and_ndcg(users, _rating_blend_lists(recommender, users, block), test, ks=(10,)),
                           "two-stage, as served": _at_10(metrics["pipeline"])}

    popular = top_k_report(most_popular_from_training(train, catalog_ids), test, batch_users=block, catalog=catalog)
    popular["pipeline"] = _at_10(popular["excluding_seen"])
    if implicit:
        note = "implicit feedback: there are no ratings, so RMSE is not measured"
        log(f"evaluating: {note}")
        metrics["rating"] = popular["rating"] = {"note": note}
        mf_rating = {"note": note}
    else:
        log("evaluating: the rating model's RMSE on every test rating")
        predicted = recommender.call(recommender.ratings_signature, 16384, user_id=test_users,
                                     movie_ids=test_movies[:, None],
                                       keep=("predicted_ratings",))
        metrics["rating"] = {"rmse": rmse(predicted["predicted_ratings"][:, 0], test["rating"])}
        log("evaluating: baselines (most-popular, movie mean rating, biased matrix factorization)")
        popular["rating"] = {"rmse": rmse(movie_mean(train, test_movies), test["rating"])}
        mf = BiasedMatrixFactorization(factors=mf_factors, regularization=mf_regularization,
                                       rating_scale=tuple(rating_scale)).fit(train)
        mf_rating = {"rmse": rmse(mf.predict(test_users, test_movies), test["rating"])}
    metrics["ablation"]["most popular"] = _at_10(popular["excluding_seen"])
    rated = int(np.isin(np.asarray(catalog_ids).astype(str), distinct_ids(train["movie_id"])).sum())
    if with_ease and rated > EASE_MAX_CATALOG:
        log(f"evaluating: EASE left out of the ablation: {rated:,} rated movies, above the {EASE_MAX_CATALOG:,} it is fitted on")
    elif with_ease:
        seen = SeenMovies(Vocabularies(list(users_of(train)), [], [], [], [], []), catalog_ids, train)
        kinds = [("EASE", None, f"closed form, lambda 200, over the {rated:,} rated movies")]
        if sessions is not None:
            kinds.append((SESSION_EASE, sessions, f"the list ranker's {sessions.describe()}"))
        for name, kernel, description in kinds:
            log(f"evaluating: EASE ({description})")
            ease = ease_recommender(train, catalog_ids, seen, sessions=kernel)
            lists = np.concatenate([ease(users[i : i + 1024], 10, True) for i in range(0, len(users), 1024)])
            metrics["ablation"][name] = recall_and_ndcg(users, lists, test, ks=(10,))
    metrics["baselines"] = {
        "most_popular": popular,
        "matrix_factorization": {"rating": mf_rating, "factors": mf_factors, "regularization": mf_regularization},
    }
    # The rating model's RMSE under its name before this release ("ranking"), read by older scripts; to be removed.
    for section in (metrics, popular, metrics["baselines"]["matrix_factorization"]):
        section["ranking"] = section["rating"]
    if named.RECOMMEND_FROM_HISTORY in recommender.signatures:
        log("evaluating: cold start (test users as visitors the model never saw, from their training movies)")
        metrics["cold_start"] = cold_start_report(recommender, train, test)
    metrics["test"] = {"ratings": int(len(test)), "users": int(len(users)),
                       "cold_users": int(len(set(users) - set(distinct_ids(train["user_id"]))))}
    return metrics


#: Movies a cold-start visitor is taken to have rated, besides "all of them".
COLD_START_HISTORY = 5


class TrainingHistories:
    """Users' training movies and the training set's most rated movies, from one pass over the
    training movie ids (held as integer codes: strings are made per call, for a batch of users,
    not for every training rating)."""

    def __init__(self, train: pd.DataFrame, users: np.ndarray):
        owner = id_positions(pd.Index(users), train["user_id"])
        rows = np.flatnonzero(owner >= 0)
        self._rows = rows[np.lexsort((train["timestamp"].to_numpy()[rows], owner[rows]))]
        self._splits = np.searchsorted(owner[self._rows], np.arange(len(users) + 1))
        self._codes, names = pd.factorize(train["movie_id"])
        self._names = np.asarray(names).astype(str)

    def read(self, start: int, stop: int, last: int | None = None) -> list[list[str]]:
        """Users ``start .. stop - 1``'s (of ``users``) training movies, oldest first (ties in data
        order), only the ``last`` most recent if given."""
        chosen = []
        for user in range(start, stop):
            begin, end = self._splits[user], self._splits[user + 1]
            if last:
                begin = max(begin, end - last)
            chosen.append(self._names[self._codes[self._rows[begin:end]]].tolist())
        return chosen

    def most_popular_lists(self, histories: list[list[str]], k: int = 10) -> np.ndarray:
        """The ``k`` most rated training movies minus each history's (ties in data order):
        most-popular with a visitor's exclusions, for short histories (at most ``k`` movies are
        looked past)."""
        counts = np.bincount(self._codes[self._codes >= 0], minlength=len(self._names))
        longest = max((len(history) for history in histories), default=0)
        popular = self._names[np.argsort(-counts, kind="stable")[: k + longest]]
        return np.array([[m for m in popular if m not in set(history)][:k] for history in histories])


def cold_start_report(recommender: Recommender, train: pd.DataFrame, test: pd.DataFrame) -> dict:
    """Top-10 recall and NDCG of ``recommend_from_history`` for the test users as if the model had
    never seen them: from their ``COLD_START_HISTORY`` most recent training movies, and from all of
    them. The signature excludes only the movies it is given, so with 5 the list may hold movies
    the user rated earlier (counted as misses); with all, it excludes what ``serving_default`` does.
    """
    users = users_of(test)
    histories = TrainingHistories(train, users)
    report = {}
    calls = [(start, min(start + USERS_PER_RANKING_CALL, len(users)))
             for start in range(0, len(users), USERS_PER_RANKING_CALL)]
    for name, last in ((f"history_{COLD_START_HISTORY}", COLD_START_HISTORY), ("history_all", None)):
        with warnings.catch_warnings():  # a short list (a user who rated nearly everything) is measured as it is
            warnings.simplefilter("ignore", CappedWarning)
            lists = np.concatenate([recommender.recommend_from_history(histories.read(start, stop, last), k=10,
                                                                       arrays=True)["movie_ids"]
                                    for start, stop in calls])
        report[name] = recall_and_ndcg(users, lists, test, ks=(10,))
    # The baseline with the same exclusions: the most rated training movies, minus the 5 given.
    lists = histories.most_popular_lists(histories.read(0, len(users), COLD_START_HISTORY))
    report[f"most_popular_history_{COLD_START_HISTORY}"] = recall_and_ndcg(users, lists, test, ks=(10,))
    return report


def _at_10(numbers: dict[str, float]) -> dict[str, float]:
    return {key: value for key, value in numbers.items() if key.endswith("_at_10")}


def _rating_blend_lists(recommender: Recommender, users: np.ndarray, block: int, k: int = 10) -> np.ndarray:
    """The rating blend's two-stage top ``k``: candidates kept by retrieval logit + w * predicted rating
    (retrieval called ``block`` users at a time, the evaluation's block for whole-catalog scores)."""
    num_candidates = recommender.model_dir.read_config().serving.num_candidates
    # The blend's factors as exported.
    scale, weight = recommender.model.logit_scale, recommender.model.rating_weight
    lists = []
    for start in range(0, len(users), block):
        batch = users[start : start + block]
        candidates = recommender.call(named.RETRIEVE, block, user_id=batch, k=num_candidates,
                                      keep=("movie_ids", "retrieval_scores"))
        predicted = recommender.call(recommender.ratings_signature, USERS_PER_RANKING_CALL, user_id=batch,
                                     movie_ids=candidates["movie_ids"],
                                     keep=("predicted_ratings",))
        order = blend_top_k(tf.constant(candidates["retrieval_scores"]), tf.constant(predicted["predicted_ratings"]),
                            scale, weight, k)
        lists.append(np.take_along_axis(candidates["movie_ids"], order.numpy(), axis=1))
    return np.concatenate(lists)
