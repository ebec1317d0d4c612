"""Evaluation numbers people can trust: top-K accuracy, recall and NDCG, beside baselines.

Definitions (all on the test split, all movies of the catalog as candidates):

* ``factorized_top_k/top_K``: share of test ratings whose movie is among the K
  highest-scored movies for that user, seen (training) movies *not* excluded: TFRS's
  ``FactorizedTopK`` ``top_K_categorical_accuracy``.
* ``recall_at_K``: the same share with each user's training movies excluded from the
  list (micro-averaged over test ratings, as in ``../shared/README.md``).
* ``ndcg_at_10``: binary-relevance NDCG of the top 10 (seen excluded), averaged over
  test users.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrs_pipeline.export import load_saved_model
from tfrs_pipeline.index import SeenAwareBruteForce, SeenMovies

#: A recommender for evaluation: (user ids, k, exclude_seen) -> movie ids [users, k].
Recommender = Callable[[np.ndarray, int, bool], np.ndarray]


def as_str(values: np.ndarray) -> np.ndarray:
    """Decodes the bytes TensorFlow returns for strings."""
    return np.asarray([v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in np.ravel(values)],
                      dtype=object).reshape(np.shape(values))


def hit_ranks(users: np.ndarray, recommended: np.ndarray, test: pd.DataFrame) -> np.ndarray:
    """Rank (0-based) of each test rating's movie in its user's list; ``inf`` where absent."""
    k = recommended.shape[1]
    lists = pd.DataFrame({
        "user_id": np.repeat(users.astype(str), k),
        "movie_id": as_str(recommended.ravel()),
        "rank": np.tile(np.arange(k), len(users)),
    }).drop_duplicates(["user_id", "movie_id"])
    pairs = pd.DataFrame({"user_id": test["user_id"].astype(str).to_numpy(), "movie_id": test["movie_id"].astype(str).to_numpy()})
    merged = pairs.merge(lists, on=["user_id", "movie_id"], how="left")
    return merged["rank"].fillna(np.inf).to_numpy()


def users_of(frame: pd.DataFrame) -> np.ndarray:
    """The distinct users of a split side, sorted (the order every ranked-list evaluation uses)."""
    return np.asarray(sorted(set(frame["user_id"].astype(str))), dtype=object)


def recall_and_ndcg(users: np.ndarray, lists: np.ndarray, test: pd.DataFrame, ks=(10, 50, 100)) -> dict[str, float]:
    """``recall_at_K`` for each K and ``ndcg_at_10`` of ranked ``lists`` [users, K] against ``test``."""
    ranks = hit_ranks(users, lists, test)
    result = {f"recall_at_{k}": float(np.mean(ranks < k)) for k in ks}
    result["ndcg_at_10"] = ndcg(test, ranks, 10)
    return result


def ndcg(test: pd.DataFrame, ranks: np.ndarray, k: int = 10) -> float:
    """Binary-relevance NDCG@k averaged over test users."""
    frame = pd.DataFrame({"user_id": test["user_id"].astype(str).to_numpy(), "rank": ranks})
    frame["gain"] = np.where(frame["rank"] < k, 1.0 / np.log2(np.minimum(frame["rank"], k) + 2.0), 0.0)
    per_user = frame.groupby("user_id").agg(dcg=("gain", "sum"), relevant=("gain", "size"))
    discounts = np.cumsum(1.0 / np.log2(np.arange(k) + 2.0))
    ideal = discounts[np.minimum(per_user["relevant"].to_numpy(), k) - 1]
    return float(np.mean(per_user["dcg"].to_numpy() / ideal))


def ranking_report(recommend: Recommender, test: pd.DataFrame, *, batch_users: int = 1024) -> dict[str, dict[str, float]]:
    """``factorized_top_k`` (seen kept) and ``excluding_seen`` numbers for one recommender."""
    users = users_of(test)

    def lists(k: int, exclude: bool) -> np.ndarray:
        return np.concatenate([recommend(users[i : i + batch_users], k, exclude) for i in range(0, len(users), batch_users)])

    ranks = hit_ranks(users, lists(100, False), test)
    return {"factorized_top_k": {f"top_{k}": float(np.mean(ranks < k)) for k in (1, 5, 10, 50, 100)},
            "excluding_seen": recall_and_ndcg(users, lists(100, True), test)}


def index_recommender(query_fn: Callable[[tf.Tensor], tf.Tensor], index: SeenAwareBruteForce,
                      seen: SeenMovies) -> Recommender:
    """Turns a query function and an index into a :data:`Recommender`."""

    def recommend(users: np.ndarray, k: int, exclude_seen: bool) -> np.ndarray:
        user_ids = tf.constant(users.astype(str))
        queries = query_fn(user_ids)
        if exclude_seen:
            _, ids = index.query_excluding(queries, seen(user_ids), k)
        else:
            _, ids = index(queries, k)
        return ids.numpy()

    return recommend


def most_popular_recommender(movie_ids: np.ndarray, train_counts: np.ndarray, seen: SeenMovies) -> Recommender:
    """Most-rated movies first: a factorized model whose single dimension is the count.

    Args:
        movie_ids: catalog ids, in catalog order.
        train_counts: training ratings per catalog movie, same order.
        seen: each user's training movies.
    """
    index = SeenAwareBruteForce(k=100)
    index.reindex(tf.constant(train_counts.reshape(-1, 1), tf.float32), tf.constant(movie_ids.astype(str)))
    return index_recommender(lambda users: tf.ones([tf.shape(users)[0], 1]), index, seen)


def most_popular_from_training(train: pd.DataFrame, catalog_ids: np.ndarray) -> Recommender:
    """The most-popular recommender of a training split, over ``catalog_ids``, seen movies excludable."""
    from tfrs_pipeline.features import Vocabularies

    counts = train["movie_id"].astype(str).value_counts().reindex(catalog_ids).fillna(0).to_numpy(np.float32)
    vocab = Vocabularies(list(users_of(train)), [], [], [], [], [])
    return most_popular_recommender(catalog_ids, counts, SeenMovies(vocab, catalog_ids, train))


def rmse(predicted: np.ndarray, actual: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(predicted, np.float64) - np.asarray(actual, np.float64)) ** 2)))


def call_batched(signature, batch: int, arrays: dict[str, np.ndarray], **constants) -> dict[str, np.ndarray]:
    """Calls a SavedModel signature over the first axis of ``arrays`` in batches; concatenates outputs.

    ``constants`` (such as ``k``) are passed unchanged to every call.
    """
    n = len(next(iter(arrays.values())))
    outputs: dict[str, list] = {}
    for start in range(0, n, batch):
        sliced = {name: tf.constant(np.asarray(value)[start : start + batch].astype(str)) for name, value in arrays.items()}
        result = signature(**sliced, **{name: tf.constant(value) for name, value in constants.items()})
        for name, tensor in result.items():
            outputs.setdefault(name, []).append(tensor.numpy())
    return {name: np.concatenate(parts) for name, parts in outputs.items()}


def factorized_top_k_of_export(model_dir, test: pd.DataFrame, catalog_ids: np.ndarray,
                               ks=(1, 5, 10, 50, 100), batch: int = 4096) -> dict[str, float]:
    """TFRS ``FactorizedTopK`` on the test split, computed from the exported towers (seen movies kept)."""
    import tensorflow_recommenders as tfrs

    query_tower = load_saved_model(str(model_dir / "stages" / "query_tower")).signatures["serving_default"]
    candidate_tower = load_saved_model(str(model_dir / "stages" / "candidate_tower")).signatures["serving_default"]
    catalog = tf.constant(catalog_ids.astype(str))
    embeddings = tf.concat([candidate_tower(movie_id=catalog[i : i + batch])["embeddings"]
                            for i in range(0, len(catalog_ids), batch)], axis=0)
    index = tfrs.layers.factorized_top_k.BruteForce(k=max(ks))
    index.index(embeddings, catalog)
    metric = tfrs.metrics.FactorizedTopK(candidates=index, ks=ks)
    users = test["user_id"].astype(str).to_numpy()
    movies = test["movie_id"].astype(str).to_numpy()
    for start in range(0, len(test), batch):
        movie_batch = tf.constant(movies[start : start + batch])
        metric.update_state(query_tower(user_id=tf.constant(users[start : start + batch]))["embeddings"],
                            candidate_tower(movie_id=movie_batch)["embeddings"], true_candidate_ids=movie_batch)
    return {f"top_{k}": float(value) for k, value in zip(ks, metric.result())}


def evaluate_export(model_dir, train: pd.DataFrame, test: pd.DataFrame, rating_scale: tuple[float, float], *,
                    mf_factors: int = 32, mf_regularization: float = 15.0, log=print) -> dict:
    """Every number of ``metrics.json``, measured on the exported SavedModels (what ships).

    Returns:
        ``factorized_top_k``, ``excluding_seen``, ``ranking``, ``pipeline``, and ``baselines``
        (``most_popular``, ``matrix_factorization``) with the same keys where they apply.
    """
    from pathlib import Path

    from tfrs_pipeline.baselines import BiasedMatrixFactorization, movie_mean

    model_dir = Path(model_dir)
    pipeline = load_saved_model(str(model_dir))
    catalog_ids = as_str(pipeline.catalog_ids.numpy())
    users = users_of(test)
    test_users = test["user_id"].astype(str).to_numpy()
    test_movies = test["movie_id"].astype(str).to_numpy()

    log("evaluating: factorized top-K (TFRS definition) from the exported towers")
    metrics: dict = {"factorized_top_k": factorized_top_k_of_export(model_dir, test, catalog_ids)}

    log("evaluating: recall and NDCG with seen movies excluded, retrieval only and two-stage")
    retrieved = call_batched(pipeline.signatures["retrieve"], 1024, {"user_id": users}, k=100)
    metrics["excluding_seen"] = recall_and_ndcg(users, retrieved["movie_ids"], test)
    served = call_batched(pipeline.signatures["serving_default"], 1024, {"user_id": users}, k=10)
    metrics["pipeline"] = {**recall_and_ndcg(users, served["movie_ids"], test, ks=(10,)),
                           "rating_weight": float(pipeline.rating_weight.numpy())}
    metrics["retrieval_only"] = {"recall_at_10": metrics["excluding_seen"]["recall_at_10"],
                                 "ndcg_at_10": metrics["excluding_seen"]["ndcg_at_10"]}

    log("evaluating: ranking RMSE on every test rating")
    predicted = call_batched(pipeline.signatures["rank"], 16384, {"user_id": test_users, "movie_ids": test_movies[:, None]})
    metrics["ranking"] = {"rmse": rmse(predicted["predicted_ratings"][:, 0], test["rating"])}

    log("evaluating: baselines (most-popular, movie mean rating, biased matrix factorization)")
    popular = ranking_report(most_popular_from_training(train, catalog_ids), test)
    popular["ranking"] = {"rmse": rmse(movie_mean(train, test_movies), test["rating"])}
    popular["pipeline"] = {"recall_at_10": popular["excluding_seen"]["recall_at_10"],
                           "ndcg_at_10": popular["excluding_seen"]["ndcg_at_10"]}
    mf = BiasedMatrixFactorization(factors=mf_factors, regularization=mf_regularization,
                                   rating_scale=tuple(rating_scale)).fit(train)
    metrics["baselines"] = {
        "most_popular": popular,
        "matrix_factorization": {"ranking": {"rmse": rmse(mf.predict(test_users, test_movies), test["rating"])},
                                 "factors": mf_factors, "regularization": mf_regularization},
    }
    metrics["test"] = {"ratings": int(len(test)), "users": int(len(users)),
                       "cold_users": int(len(set(users) - set(train["user_id"].astype(str))))}
    return metrics
