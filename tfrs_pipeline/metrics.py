"""Metrics of ranked lists and predicted ratings: pure functions of NumPy arrays and DataFrames.

Nothing here imports a model, an index or an exported SavedModel, so every stage, the
training loop and the evaluation of an exported model share one definition of each number.

Definitions (``test`` is a frame of held-out ``user_id``, ``movie_id`` rows):

* ``hit_ranks``: the 0-based rank of each test rating's movie in its user's list, ``inf``
  where the list misses it.
* ``hit_rate_at_k``: the share of test *ratings* whose movie is in the user's top K
  (micro-averaged; TFRS's factorized top-K accuracy when seen movies are kept, and the
  "recall" of ``../shared/README.md`` when they are excluded).
* ``user_recall``: per-user recall@K, hits / the user's test movies, averaged over users
  (the recall of RecBole, ranx and trec_eval); optionally capped at K.
* ``ndcg``: binary-relevance NDCG@K, averaged over test users.
* ``rmse``: root mean squared error of predicted ratings.

Examples:
    >>> import pandas as pd
    >>> test = pd.DataFrame({"user_id": ["u", "u"], "movie_id": ["a", "c"]})
    >>> ranks = hit_ranks(np.array(["u"]), np.array([["a", "b", "c"]]), test)
    >>> ranks.tolist()
    [0.0, 2.0]
    >>> hit_rate_at_k(ranks, 2)
    0.5
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from tfrs_pipeline.ids import as_str, catalog_positions, id_positions, users_of

#: A recommender as evaluation sees it: (user ids, k, exclude_seen) -> movie ids [users, k].
RecommendFn = Callable[[np.ndarray, int, bool], np.ndarray]


#: The K of every factorized top-K accuracy we report (TFRS's tutorial uses the same).
TOP_KS = (1, 5, 10, 50, 100)


def _user_keys(test: pd.DataFrame) -> np.ndarray:
    """Each test rating's user as its position among the sorted test users: integers that group and
    sort as the user id strings do, without one string per rating."""
    return id_positions(pd.Index(users_of(test)), test["user_id"])


def top_k_columns(scores: np.ndarray, k: int) -> np.ndarray:
    """Column positions [rows, k] of each row's ``k`` highest ``scores``, best first; equal scores
    in column order (as the retrieval index's top-k orders them), also where they straddle the
    k-th place: the same columns as a stable sort's first ``k``, without sorting whole rows."""
    rows, columns = scores.shape
    k = min(k, columns)
    if k < columns:
        kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1 : k]
        above, tied = scores > kth, scores == kth
        # Of the columns tied with the k-th score, the first ones in column order fill the k places.
        kept = above | (tied & (np.cumsum(tied, axis=1) <= k - above.sum(axis=1, keepdims=True)))
        top = np.nonzero(kept)[1].reshape(rows, k)
    else:
        top = np.tile(np.arange(k), (rows, 1))
    order = np.lexsort((top, -np.take_along_axis(scores, top, axis=1)), axis=-1)
    return np.take_along_axis(top, order, axis=1)


def hit_ranks(users: np.ndarray, recommended: np.ndarray, test: pd.DataFrame,
              catalog: pd.Index | None = None) -> np.ndarray:
    """Rank (0-based) of each ``test`` rating's movie in its user's row of ``recommended``; ``inf`` where absent.

    Args:
        users: user ids, one per row of ``recommended``.
        recommended: movie ids [users, K], best first (``bytes`` or ``str``); with ``catalog``, their
            positions in it instead (integers, -1 for none; see :func:`catalog_positions`).
        test: held-out ratings with ``user_id`` and ``movie_id``.
        catalog: the movie ids that ``recommended``'s positions point into.

    Returns:
        float array, one entry per row of ``test`` in its order.
    """
    k = recommended.shape[1]
    # Integer keys (user position, movie code), not one string pair per listed movie: 138k users'
    # top 100 are 13.8M pairs at MovieLens 20M.
    if catalog is not None:
        codes, distinct = np.asarray(recommended, np.int64).ravel(), catalog
    else:
        codes, distinct = pd.factorize(np.asarray(recommended).ravel())
    slots = np.flatnonzero(codes >= 0)
    listed = (slots // k) * len(distinct) + codes[slots]
    keys, first = np.unique(listed, return_index=True)  # a movie listed twice for a user counts at its first rank
    ranks = np.append(slots[first] % k, -1).astype(np.float64)  # the last entry: not found
    user_rows = id_positions(pd.Index(np.asarray(users).astype(str)), test["user_id"])
    movie_codes = id_positions(pd.Index(as_str(distinct)), test["movie_id"])
    wanted = user_rows.astype(np.int64) * len(distinct) + movie_codes
    at = np.searchsorted(keys, wanted)
    found = (user_rows >= 0) & (movie_codes >= 0) & (at < len(keys))
    found[found] = keys[at[found]] == wanted[found]
    return np.where(found, ranks[np.where(found, at, len(keys))], np.inf)


def hit_rate_at_k(ranks: np.ndarray, k: int) -> float:
    """Share of test ratings ranked in the top ``k`` (micro-average over ratings)."""
    return float(np.mean(np.asarray(ranks) < k)) if len(ranks) else 0.0


def ndcg(test: pd.DataFrame, ranks: np.ndarray, k: int = 10) -> float:
    """Binary-relevance NDCG@k averaged over test users.

    Each user's DCG sums ``1 / log2(rank + 2)`` over their test movies ranked in the top
    ``k``; the ideal DCG puts ``min(k, relevant)`` of them at the top.
    """
    frame = pd.DataFrame({"user_id": _user_keys(test), "rank": ranks})
    frame["gain"] = np.where(frame["rank"] < k, 1.0 / np.log2(np.minimum(frame["rank"], k) + 2.0), 0.0)
    per_user = frame.groupby("user_id").agg(dcg=("gain", "sum"), relevant=("gain", "size"))
    discounts = np.cumsum(1.0 / np.log2(np.arange(k) + 2.0))
    ideal = discounts[np.minimum(per_user["relevant"].to_numpy(), k) - 1]
    return float(np.mean(per_user["dcg"].to_numpy() / ideal))


def user_recall(test: pd.DataFrame, ranks: np.ndarray, k: int, *, capped: bool = False) -> float:
    """Per-user recall@k: the mean over test users of hits in the top ``k`` / relevant movies.

    The denominator is the user's number of test movies (RecBole, ranx, trec_eval and
    Microsoft Recommenders' ``recall_at_k``); with ``capped`` it is ``min(k, relevant)``, so
    a user with more relevant movies than slots can still reach 1.
    """
    frame = pd.DataFrame({"user_id": _user_keys(test), "hit": np.asarray(ranks) < k})
    per_user = frame.groupby("user_id")["hit"].agg(["sum", "size"])
    relevant = np.minimum(per_user["size"].to_numpy(), k) if capped else per_user["size"].to_numpy()
    return float(np.mean(per_user["sum"].to_numpy() / relevant)) if len(per_user) else 0.0


def recall_and_ndcg(users: np.ndarray, lists: np.ndarray, test: pd.DataFrame, ks=(10, 50, 100),
                    catalog: pd.Index | None = None) -> dict[str, float]:
    """Named numbers of ranked ``lists`` [users, K] against ``test``, for each K in ``ks``
    (``lists`` as positions in ``catalog`` where it is given, see :func:`hit_ranks`).

    * ``hit_rate_at_K``: share of test *ratings* found in their user's top K (per rating);
    * ``recall_at_K``: per-user recall (hits / the user's test movies), averaged over users;
    * ``capped_recall_at_K``: per-user hits / min(K, the user's test movies);
    * ``ndcg_at_10``: binary-relevance NDCG@10, averaged over users.
    """
    ranks = hit_ranks(users, lists, test, catalog)
    result = {}
    for k in ks:
        result[f"hit_rate_at_{k}"] = hit_rate_at_k(ranks, k)
        result[f"recall_at_{k}"] = user_recall(test, ranks, k)
        result[f"capped_recall_at_{k}"] = user_recall(test, ranks, k, capped=True)
    result["ndcg_at_10"] = ndcg(test, ranks, 10)
    return result


def ndcg_of_lists(hits: np.ndarray, relevant: np.ndarray) -> float:
    """Binary NDCG of ranked lists given as hit flags [lists, K]; ``relevant``: each list's relevant count [lists]."""
    k = hits.shape[1]
    discounts = 1.0 / np.log2(np.arange(k) + 2.0)
    ideal = np.cumsum(discounts)[np.clip(np.asarray(relevant), 1, k) - 1]
    return float(np.mean((np.asarray(hits, np.float64) * discounts).sum(axis=1) / ideal)) if len(hits) else 0.0


def recall_of_lists(hits: np.ndarray, relevant: np.ndarray) -> float:
    """Per-list recall: hits [lists, K] summed over K, / each list's relevant count, averaged."""
    return float(np.mean(np.asarray(hits).sum(axis=1) / np.maximum(np.asarray(relevant), 1))) if len(hits) else 0.0


def top_k_report(recommend: RecommendFn, test: pd.DataFrame, *, batch_users: int = 1024,
                   catalog: pd.Index | None = None) -> dict[str, dict[str, float]]:
    """``factorized_top_k`` (seen kept) and ``excluding_seen`` numbers of one recommender on ``test``.

    With ``catalog`` (every movie the recommender can list), each batch's lists are kept as
    positions in it rather than as ids.
    """
    users = users_of(test)

    def lists(k: int, exclude: bool) -> np.ndarray:
        batches = (recommend(users[i : i + batch_users], k, exclude) for i in range(0, len(users), batch_users))
        return np.concatenate([batch if catalog is None else catalog_positions(batch, catalog) for batch in batches])

    ranks = hit_ranks(users, lists(max(TOP_KS), False), test, catalog)
    return {"factorized_top_k": {f"top_{k}": hit_rate_at_k(ranks, k) for k in TOP_KS},
            "excluding_seen": recall_and_ndcg(users, lists(100, True), test, catalog=catalog)}


def rmse(predicted, actual) -> float:
    """Root mean squared error (float64 arithmetic)."""
    return float(np.sqrt(np.mean((np.asarray(predicted, np.float64) - np.asarray(actual, np.float64)) ** 2)))


#: The former name of :func:`top_k_report` (it reports top-k accuracy, not a ranking); to be removed in the next release.
ranking_report = top_k_report
