"""How well can anything recommend from a visitor's 5 movies on synthetic data? The generator's own model, scoring.

A visitor's 5 most recent movies are judged against their test ratings (``cold_start.history_5``
of ``metrics.json``). On synthetic data the truth behind those ratings is known
(:func:`~tfrs_pipeline.data.synthetic.tastes`): each movie's cluster and popularity, and how users'
cluster preferences are drawn. This benchmark scores every movie for each test user as the
generator would, from a posterior over the user's preferences given those 5 movies (prior users
drawn as the generator draws them, each weighted by the chance of picking those movies), and
ranks the same lists the evaluation ranks. No model trained on the ratings can know more of the
user than those 5 movies, so its figure is about the ceiling for ``history_5`` there; beside it,
the same users with their true preferences (what a recommender that knew the user entirely could
reach) and most-popular minus those 5, the evaluation's baseline.

Examples:
    >>> results = benchmark_visitor_bound("synthetic:100k")  # doctest: +SKIP
    >>> results["generator_from_5"]["ndcg_at_10"] / results["most_popular_minus_5"]["ndcg_at_10"]  # doctest: +SKIP
"""

from __future__ import annotations

import time

import numpy as np

from tfrs_pipeline.benchmarks.output import write_results
from tfrs_pipeline.config import PipelineConfig
from tfrs_pipeline.data import load_data
from tfrs_pipeline.data.split import split_ratings
from tfrs_pipeline.data.synthetic import parse_size, tastes
from tfrs_pipeline.errors import ConfigError
from tfrs_pipeline.evaluation.evaluate import COLD_START_HISTORY, TrainingHistories
from tfrs_pipeline.ids import users_of
from tfrs_pipeline.metrics import recall_and_ndcg

#: Prior users the posterior is drawn from (its sampling error: below 0.001 NDCG@10 on synthetic:100k).
PRIOR_USERS = 200_000
#: Most test users scored (a fixed sample beyond): each costs a pass over the prior.
MOST_USERS = 5_000


def benchmark_visitor_bound(source: str = "synthetic:100k", *, config: PipelineConfig | None = None,
                            prior_users: int = PRIOR_USERS, most_users: int = MOST_USERS, log=print,
                            out: str | None = None) -> dict:
    """Top-10 recall and NDCG, on the run's split of ``source`` (``synthetic:SIZE`` only), of lists
    from each test user's 5 most recent training movies: the generator's posterior scores, most
    popular minus those 5, and the user's true preferences (each list without those 5 movies).

    Raises:
        ConfigError: ``source`` is not synthetic (no truth to score with).
    """
    config = config or PipelineConfig()
    kind, _, text = source.partition(":")
    if kind != "synthetic":
        raise ConfigError(f"benchmark visitor-bound needs --data synthetic:SIZE (the generator's own model scores "
                          f"there), got {source!r}")
    size, data_seed = parse_size(text)
    began = time.perf_counter()
    truth = tastes(size, data_seed)
    data = load_data(source, config.data)
    split = split_ratings(data, config.split)
    users = users_of(split.test)
    if len(users) > most_users:
        users = users[np.sort(np.random.default_rng(config.runtime.seed).choice(len(users), most_users, replace=False))]
    test = split.test[split.test["user_id"].astype(str).isin(set(users))]
    histories = TrainingHistories(split.train, users)
    recent = histories.read(0, len(users), COLD_START_HISTORY)
    prior = truth.sample_users(prior_users, seed=config.runtime.seed)
    log(f"visitor bound on {source}: {len(users):,} test users, each from their {COLD_START_HISTORY} most recent "
        f"training movies; the posterior over their tastes from {prior_users:,} prior users")

    def top_10(score_rows, exclude: list[str]) -> np.ndarray:
        scores = np.array(score_rows, np.float64)
        scores[[int(movie) - 1 for movie in exclude]] = -np.inf
        return (np.argsort(-scores, kind="stable")[:10] + 1).astype(str)

    posterior, known = [], []
    for index, (user, movies) in enumerate(zip(users, recent)):
        rows = [int(movie) - 1 for movie in movies]
        likelihood = np.log(truth.pick_probability(prior, rows)).sum(axis=1)
        weights = np.exp(likelihood - likelihood.max())
        posterior.append(top_10(truth.pick_probability(((weights / weights.sum()) @ prior)[None])[0], movies))
        known.append(top_10(truth.pick_probability(truth.cluster_weights[int(user) - 1][None])[0], movies))
        if (index + 1) % 1000 == 0:
            log(f"  {index + 1:,} of {len(users):,} users")
    results = {
        "data": source, "users": len(users), "prior_users": prior_users,
        "most_popular_minus_5": recall_and_ndcg(users, histories.most_popular_lists(recent), test, ks=(10,)),
        "generator_from_5": recall_and_ndcg(users, np.array(posterior), test, ks=(10,)),
        "generator_knowing_the_user": recall_and_ndcg(users, np.array(known), test, ks=(10,)),
        "seconds": round(time.perf_counter() - began, 1),
    }
    base = results["most_popular_minus_5"]["ndcg_at_10"]
    for name, label in (("most_popular_minus_5", f"most popular minus those {COLD_START_HISTORY}"),
                        ("generator_from_5", f"the generator's model from those {COLD_START_HISTORY} movies"),
                        ("generator_knowing_the_user", "the generator's model knowing the user's tastes")):
        ndcg = results[name]["ndcg_at_10"]
        log(f"  {label:<52} NDCG@10 {ndcg:.4f}  recall@10 {results[name]['recall_at_10']:.4f}  "
            f"({ndcg / base if base else float('nan'):.3f}x most popular)")
    write_results(results, out, log)
    return results
