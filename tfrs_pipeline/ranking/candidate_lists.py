"""The list ranker's training lists, made as serving makes its lists.

For each user of a hold-out, the retrieval stage proposes its top ``N`` movies with the user's
other movies excluded, from a query built on those alone; a candidate is relevant (label 1) where
the user went on to rate it in the hold-out. The retrieval model never trained on those ratings
and never saw them in a history, so the candidates and their scores look as they will at serving
time. The item-item model then adds its best-scored movies that retrieval did not return
(:func:`add_item_item_candidates`, ``ranker.item_candidates``), so the ranker can reach movies
retrieval missed; serving merges the two sources the same way. :func:`serving_lists` does all of
it for one pair of trained models (the pipeline's, and each cross-fitted fold's);
:func:`short_history_lists` makes lists from a few of a user's movies, as a visitor brings them.

Examples:
    >>> made = serving_lists(retrieval_model, rating_model, prepared, prepared.validation,
    ...                      config, scale=5.0)  # doctest: +SKIP
    >>> made.lists.movie_ids.shape  # [users, num_candidates + ranker.item_candidates]  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrs_pipeline.config import PipelineConfig
from tfrs_pipeline.features.dataset import Prepared
from tfrs_pipeline.ids import id_positions, rows_per_block
from tfrs_pipeline.ranking.list_ranker import ListRanker, make_list_ranker
from tfrs_pipeline.ranking.neighbours import ItemNeighbours
from tfrs_pipeline.retrieval.candidates import CandidateRetriever
from tfrs_pipeline.retrieval.index import SeenMovies


@dataclass
class CandidateLists:
    """Retrieval's candidate lists for a set of users, with hold-out labels.

    Args:
        user_ids: one user per list [lists].
        movie_ids: candidates, best retrieval score first [lists, N].
        retrieval_scores: their index scores [lists, N] (``-inf`` past the user's unseen movies).
        labels: 1.0 where the user rated the candidate in the hold-out [lists, N].
        relevant: how many hold-out movies each user has, retrieved or not [lists].
        retrieved: True where the two-tower model proposed the candidate, False where the
            item-item model added it [lists, N] (None: every candidate was retrieved).
        histories: the history each list was made from, catalog rows, one array per list (None:
            each user's whole fitting part, looked up by user id).
    """

    user_ids: np.ndarray
    movie_ids: np.ndarray
    retrieval_scores: np.ndarray
    labels: np.ndarray
    relevant: np.ndarray
    retrieved: np.ndarray | None = None
    histories: list[np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.user_ids)

    def take(self, rows: np.ndarray) -> CandidateLists:
        return CandidateLists(self.user_ids[rows], self.movie_ids[rows], self.retrieval_scores[rows], self.labels[rows],
                              self.relevant[rows], None if self.retrieved is None else self.retrieved[rows],
                              None if self.histories is None else [self.histories[row] for row in rows])

    def history_rows(self, histories: SeenMovies) -> tf.RaggedTensor:
        """Each list's history as catalog rows: its own, or its user's in ``histories``."""
        if self.histories is None:
            return history_rows(histories, self.user_ids)
        lengths = [len(rows) for rows in self.histories]
        values = np.concatenate(self.histories) if self.histories else np.zeros(0, np.int64)
        return tf.RaggedTensor.from_row_lengths(values.astype(np.int64), np.asarray(lengths, np.int64))

    @property
    def retrieved_mask(self) -> np.ndarray:
        return np.ones(self.movie_ids.shape, bool) if self.retrieved is None else self.retrieved

    def found(self) -> dict[str, int]:
        """Hold-out ratings among the candidates: by the two-tower model, added by the item-item model, both."""
        hits = self.labels > 0
        return {"retrieval": int((hits & self.retrieved_mask).sum()), "item_item_added": int((hits & ~self.retrieved_mask).sum()),
                "merged": int(hits.sum()), "relevant": int(self.relevant.sum())}


def candidate_lists(retriever, holdout: pd.DataFrame, num_candidates: int, batch_users: int = 1024) -> CandidateLists:
    """Retrieves ``num_candidates`` movies for every user of ``holdout`` and labels the ones they rated there.

    ``retriever`` must exclude (and build its queries from) the ratings outside the hold-out only.
    ``batch_users`` are retrieved at once (each scores the whole catalog: fewer on a huge one, see
    :func:`~tfrs_pipeline.ids.rows_per_block`).
    """
    users = np.asarray(sorted(set(holdout["user_id"].astype(str))), dtype=object)
    ids, scores = [], []
    for start in range(0, len(users), batch_users):
        batch = tf.constant(users[start : start + batch_users].astype(str))
        movie_ids, retrieval_scores, _ = retriever(batch, tf.constant(num_candidates))
        ids.append(movie_ids.numpy().astype(str))
        scores.append(retrieval_scores.numpy())
    ids = np.concatenate(ids) if ids else np.zeros((0, num_candidates), str)
    scores = np.concatenate(scores) if scores else np.zeros((0, num_candidates), np.float32)
    labels = holdout_labels(users, ids, holdout)
    relevant = holdout["user_id"].astype(str).value_counts().reindex(users).to_numpy()
    return CandidateLists(users, ids, scores, labels, relevant)


def holdout_labels(users: np.ndarray, movie_ids: np.ndarray, holdout: pd.DataFrame) -> np.ndarray:
    """1.0 where ``users[i]`` rated ``movie_ids[i, j]`` in ``holdout`` [lists, N], else 0.0."""
    pairs = set(zip(holdout["user_id"].astype(str), holdout["movie_id"].astype(str)))
    labels = np.array([[(user, movie) in pairs for movie in row] for user, row in zip(users, movie_ids)], np.float32)
    return labels.reshape(movie_ids.shape)


def history_rows(histories: SeenMovies, user_ids) -> tf.RaggedTensor:
    """Each user's rated movies as catalog rows (positions + 1), one ragged row per user."""
    seen = histories(tf.constant(np.asarray(user_ids).astype(str)) if not tf.is_tensor(user_ids) else user_ids)
    return seen.with_flat_values(tf.cast(seen.flat_values, tf.int64) + 1)


def split_lists(lists: CandidateLists, stop_fraction: float, seed: int) -> tuple[CandidateLists, CandidateLists]:
    """Lists with at least one relevant candidate, split by user into (training, early-stopping) parts."""
    useful = np.flatnonzero(lists.labels.sum(axis=1) > 0)
    rng = np.random.default_rng(seed + 2)
    shuffled = rng.permutation(useful)
    stop = max(1, int(round(len(shuffled) * stop_fraction))) if len(shuffled) > 1 else 0
    return lists.take(np.sort(shuffled[stop:])), lists.take(np.sort(shuffled[:stop]))


def pad_slots(array: np.ndarray, width: int) -> np.ndarray:
    """``array`` [lists, slots, ...] with empty slots (zeros, False) appended up to ``width``."""
    return np.pad(array, [(0, 0), (0, width - array.shape[1])] + [(0, 0)] * (array.ndim - 2))


def stacked(*parts: np.ndarray) -> np.ndarray:
    """Arrays [lists, slots, ...] one after the other, the narrower with empty slots appended."""
    width = max(part.shape[1] for part in parts)
    return np.concatenate([pad_slots(part, width) for part in parts])


@dataclass
class ServingLists:
    """What :func:`serving_lists` made for one pair of trained models.

    Args:
        ranker: the (untrained) list ranker over them, whose item-item model added candidates.
        retriever: retrieval over the fitting part (its queries and exclusions read it alone).
        histories: each user's fitting-part movies (the ones their candidates exclude).
        lists: the hold-out users' candidate lists, labelled.
    """

    ranker: ListRanker
    retriever: CandidateRetriever
    histories: SeenMovies
    lists: CandidateLists


def fitting_part_retriever(retrieval_model, prepared: Prepared) -> CandidateRetriever:
    """Retrieval whose queries and excluded movies come from ``prepared.fitting`` (the fitting part) alone,
    so that the hold-out's movies stay findable."""
    histories = SeenMovies(prepared.vocab, prepared.movies.movie_ids, prepared.fitting)
    return CandidateRetriever(retrieval_model.query_tower, retrieval_model.index, histories,
                              tf.constant(prepared.movies.movie_ids.astype(str)))


def serving_lists(retrieval_model, rating_model, prepared: Prepared, holdout: pd.DataFrame, config: PipelineConfig,
                  scale: float, *, strategy: tf.distribute.Strategy | None = None,
                  item_table: ItemNeighbours | None = None,
                  retriever: CandidateRetriever | None = None) -> ServingLists:
    """The list ranker's training lists for the users of ``holdout``, made as serving makes its lists:
    retrieval's ``serving.num_candidates`` from the fitting part ``prepared.fitting``, then the item-item
    model's ``ranker.item_candidates``, labelled against ``holdout``.

    The pipeline calls it with its models and the validation hold-out, cross-fitting with each
    fold's models and the fold.

    Args:
        retrieval_model, rating_model: the trained models, both fitted on ``prepared.fitting``.
        scale: retrieval score -> logit factor (:func:`~tfrs_pipeline.ranking.blend.logit_scale`).
        item_table: the item-item model fitted on ``prepared.fitting`` (default: fitted here).
        retriever: :func:`fitting_part_retriever` of these models, if made already.
    """
    retriever = retriever or fitting_part_retriever(retrieval_model, prepared)
    lists = candidate_lists(retriever, holdout, config.serving.num_candidates,
                            batch_users=rows_per_block(len(prepared.movies.movie_ids), 1024))
    ranker = make_list_ranker(rating_model, prepared, retrieval_model, scale, config.ranker, strategy=strategy,
                              item_table=item_table)
    lists = add_item_item_candidates(ranker, lists, retriever, holdout)
    return ServingLists(ranker, retriever, retriever.seen, lists)


def add_item_item_candidates(model: ListRanker, lists: CandidateLists, retriever, holdout: pd.DataFrame,
                             batch_users: int = 256) -> CandidateLists:
    """``lists`` with the item-item model's candidates appended (:meth:`ListRanker.add_item_item_candidates`),
    labelled against ``holdout``, the users' histories and queries those of ``retriever``.

    Args:
        retriever: the :class:`~tfrs_pipeline.retrieval.candidates.CandidateRetriever` that made
            ``lists`` (its queries score the added movies; its seen movies are the histories, never added).
    """
    if not model.item_candidates or not len(lists):
        return lists
    ids, scores, retrieved = [], [], []
    for start in range(0, len(lists), batch_users):
        users = tf.constant(lists.user_ids[start : start + batch_users].astype(str))
        seen = retriever.seen(users)
        history = seen.with_flat_values(tf.cast(seen.flat_values, tf.int64) + 1)
        merged = model.add_item_item_candidates(model.item_scores(history), retriever.query_tower.serve(users),
                                                tf.constant(lists.movie_ids[start : start + batch_users]),
                                                tf.constant(lists.retrieval_scores[start : start + batch_users]), seen)
        ids.append(merged[0].numpy().astype(str))
        scores.append(merged[1].numpy())
        retrieved.append(merged[2].numpy())
    ids, scores, retrieved = np.concatenate(ids), np.concatenate(scores), np.concatenate(retrieved)
    labels = holdout_labels(lists.user_ids, ids, holdout) * np.isfinite(scores)  # an empty slot is never relevant
    return CandidateLists(lists.user_ids, ids, scores, labels, lists.relevant, retrieved)


#: Most hold-out users the short-history lists are made for (a fixed sample beyond): at 20M ratings
#: their features would otherwise hold gigabytes beside the whole histories' lists.
SHORT_HISTORY_USERS = 5_000
#: Short histories per hold-out user: the most recent movies and sets drawn at random.
SHORT_HISTORY_DRAWS = 4


def short_history_lists(model: ListRanker, retriever, prepared: Prepared, movies: int, num_candidates: int,
                        batch_users: int = 256, users: int = SHORT_HISTORY_USERS,
                        draws: int = SHORT_HISTORY_DRAWS, seed: int = 0) -> CandidateLists:
    """Candidate lists made as for a visitor who brings only ``movies`` of a hold-out user's
    fitting-part movies (``users`` of them at most): their most recent ones, and ``draws - 1`` more
    sets drawn at random (on a random split recent movies tell no more than others, and a few
    hundred lists leave the head's early stopping to chance). Retrieval and the item-item model
    work from those movies alone and exclude only them; the lists are labelled against the hold-out
    (a movie the user rated elsewhere in the fitting part is a candidate and not relevant, as for
    such a visitor). The ranker learns from them how far to trust an item-item score from a few movies.

    Args:
        retriever: the :class:`~tfrs_pipeline.retrieval.candidates.CandidateRetriever` over the
            fitting part, with its catalog ids (for :meth:`~tfrs_pipeline.retrieval.candidates.CandidateRetriever.from_history`).
    """
    holdout = prepared.validation
    rng = np.random.default_rng(seed)
    chosen = np.asarray(sorted(set(holdout["user_id"].astype(str))), dtype=object)
    if len(chosen) > users:
        chosen = chosen[np.sort(rng.choice(len(chosen), users, replace=False))]
    train = prepared.fitting
    owner = id_positions(pd.Index(chosen), train["user_id"])
    kept = np.flatnonzero(owner >= 0)
    rated = pd.DataFrame({"user": owner[kept], "time": np.asarray(train["timestamp"], np.float64)[kept],
                          "position": id_positions(pd.Index(np.asarray(prepared.movies.movie_ids).astype(str)),
                                                   train["movie_id"])[kept]})
    rated = rated[rated["position"] >= 0].sort_values(["user", "time"], kind="stable")
    by_user = {user: group.to_numpy() for user, group in rated.groupby("user")["position"]}
    users, histories = [], []
    for index, user in enumerate(chosen):
        positions = pd.unique(by_user.get(index, np.zeros(0, np.int64))[::-1])[::-1]  # a movie rated twice: its last time
        sets = [positions[-movies:]]  # the most recent first
        if len(positions) > movies:
            sets += [rng.choice(positions, movies, replace=False) for _ in range(draws - 1)]
        users += [user] * len(sets)
        histories += [np.sort(chosen_set).astype(np.int64) for chosen_set in sets]
    users = np.asarray(users, dtype=object)
    ids, scores, retrieved = [], [], []
    for start in range(0, len(histories), batch_users):
        part = histories[start : start + batch_users]
        positions = tf.RaggedTensor.from_row_lengths(np.concatenate(part).astype(np.int64) if part else
                                                     np.zeros(0, np.int64), [len(p) for p in part])
        visitors = tf.fill([len(part)], "")
        movie_ids, retrieval_scores, queries = retriever.from_history(visitors, positions, tf.constant(num_candidates))
        rows = positions.with_flat_values(positions.flat_values + 1)
        merged = (movie_ids, retrieval_scores, tf.ones(tf.shape(movie_ids), tf.bool))
        if model.item_candidates:
            merged = model.add_item_item_candidates(model.item_scores(rows), queries, movie_ids, retrieval_scores,
                                                    positions)
        ids.append(merged[0].numpy().astype(str))
        scores.append(merged[1].numpy())
        retrieved.append(merged[2].numpy())
    ids, scores, retrieved = np.concatenate(ids), np.concatenate(scores), np.concatenate(retrieved)
    labels = holdout_labels(users, ids, holdout) * np.isfinite(scores)
    relevant = holdout["user_id"].astype(str).value_counts().reindex(users).to_numpy()
    return CandidateLists(users, ids, scores, labels, relevant, retrieved, [rows + 1 for rows in histories])
