"""Evaluation of an exported model: every number of ``metrics.json``, measured on what ships.

The metric definitions live in :mod:`tfrs_pipeline.metrics`; this module calls the
exported SavedModels (through :class:`tfrs_pipeline.client.Recommender`) on the recorded
test split, beside the baselines of :mod:`tfrs_pipeline.baselines`:

* ``factorized_top_k/top_K``: TFRS ``FactorizedTopK`` top-K accuracy from the exported
  towers, seen (training) movies *not* excluded.
* ``excluding_seen/recall_at_K``: the share of test ratings whose movie is in the user's
  top K with the user's training movies excluded (as in ``../shared/README.md``).
* ``ndcg_at_10``: binary-relevance NDCG of the top 10 (seen excluded), averaged over users.
* ``ranking/rmse``: RMSE of predicted ratings on every test rating.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrs_pipeline.baselines import BiasedMatrixFactorization, most_popular_from_training, movie_mean
from tfrs_pipeline.client import Recommender, load_saved_model
from tfrs_pipeline.metrics import TOP_KS, ranking_report, recall_and_ndcg, rmse, users_of
from tfrs_pipeline.model_dir import ModelDir


def factorized_top_k_of_export(model_dir: ModelDir, test: pd.DataFrame, catalog_ids: np.ndarray,
                               ks=TOP_KS, batch: int = 4096) -> dict[str, float]:
    """TFRS ``FactorizedTopK`` on the test split, computed from the exported towers (seen movies kept)."""
    import tensorflow_recommenders as tfrs

    query_tower = load_saved_model(model_dir.stage("query_tower")).signatures["serving_default"]
    candidate_tower = load_saved_model(model_dir.stage("candidate_tower")).signatures["serving_default"]
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


def evaluate_export(model: Recommender | ModelDir | str, train: pd.DataFrame, test: pd.DataFrame,
                    rating_scale: tuple[float, float], *, mf_factors: int = 32, mf_regularization: float = 15.0,
                    log=print) -> dict:
    """Every number of ``metrics.json``, measured on the exported SavedModels (what ships).

    Returns:
        ``factorized_top_k``, ``excluding_seen``, ``ranking``, ``pipeline``, and ``baselines``
        (``most_popular``, ``matrix_factorization``) with the same keys where they apply.
    """
    recommender = model if isinstance(model, Recommender) else Recommender.load(model)
    catalog_ids = recommender.catalog["movie_id"].to_numpy()
    users = users_of(test)
    test_users = test["user_id"].astype(str).to_numpy()
    test_movies = test["movie_id"].astype(str).to_numpy()

    log("evaluating: factorized top-K (TFRS definition) from the exported towers")
    metrics: dict = {"factorized_top_k": factorized_top_k_of_export(recommender.model_dir, test, catalog_ids)}

    log("evaluating: recall and NDCG with seen movies excluded, retrieval only and two-stage")
    retrieved = recommender.call("retrieve", 1024, user_id=users, k=100)
    metrics["excluding_seen"] = recall_and_ndcg(users, retrieved["movie_ids"], test)
    served = recommender.call("serving_default", 1024, user_id=users, k=10)
    metrics["pipeline"] = {**recall_and_ndcg(users, served["movie_ids"], test, ks=(10,)),
                           "rating_weight": float(recommender.model.rating_weight.numpy())}
    metrics["retrieval_only"] = {"recall_at_10": metrics["excluding_seen"]["recall_at_10"],
                                 "ndcg_at_10": metrics["excluding_seen"]["ndcg_at_10"]}

    log("evaluating: ranking RMSE on every test rating")
    predicted = recommender.call("rank", 16384, user_id=test_users, movie_ids=test_movies[:, None])
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
