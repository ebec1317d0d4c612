"""The retrieval index: top candidates for a query, excluding what the user already rated.

``SeenAwareBruteForce`` is ``tfrs.layers.factorized_top_k.BruteForce`` with two
additions: ``k`` may be a tensor (so an exported index answers any ``k`` after
loading), and ``query_excluding`` removes each user's seen movies exactly, by masking
their scores before the top-k (``query_with_exclusions`` instead fetches ``k`` plus the
longest exclusion list and filters, which needs that length at trace time).

Examples:
    >>> index = SeenAwareBruteForce().reindex(tf.eye(3), tf.constant(["a", "b", "c"]))
    >>> scores, ids = index.query_excluding(tf.constant([[1.0, 0.5, 0.0]]),
    ...                                     tf.ragged.constant([[0]], dtype=tf.int64), k=1)  # "a" was seen
    >>> ids.numpy()
    array([[b'b']], dtype=object)
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np
import pandas as pd
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfrs_pipeline.features.tables import group_by_user
from tfrs_pipeline.features.vocabulary import Vocabularies, id_lookup
from tfrs_pipeline.ids import id_positions


class SeenAwareBruteForce(tfrs.layers.factorized_top_k.BruteForce):
    """Exact top-k over every candidate, with call-time ``k`` and exact exclusion."""

    def reindex(self, candidates: tf.Tensor, identifiers: tf.Tensor) -> SeenAwareBruteForce:
        """Builds the index, or refreshes its embeddings in place when the shapes match."""
        if self._candidates is not None and self._candidates.shape == candidates.shape:
            self._candidates.assign(candidates)
            self._identifiers.assign(identifiers)
            return self
        return self.index(candidates, identifiers)

    @property
    def num_candidates(self) -> int:
        return int(self._candidates.shape[0])

    def scores(self, queries: tf.Tensor) -> tf.Tensor:
        """Scores of every candidate for each query, [queries, candidates]."""
        return self._compute_score(queries, self._candidates)

    def call(self, queries: tf.Tensor, k: int | tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
        return self._top_k(queries, self._k if k is None else k)

    # Called from TFRS's metrics, which AutoGraph converts; this code needs no conversion.
    @tf.autograph.experimental.do_not_convert
    def _top_k(self, queries: tf.Tensor, k: int | tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        scores = self.scores(queries)
        values, positions = tf.math.top_k(scores, k=tf.minimum(tf.cast(k, tf.int32), tf.shape(scores)[1]))
        return values, tf.gather(self._identifiers, positions)

    def query_excluding(self, queries: tf.Tensor, exclude: tf.RaggedTensor, k: int | tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Top ``k`` per query, never returning the candidate positions in ``exclude`` (ragged, one row per query).

        When ``k`` exceeds what is left after exclusion, the tail holds excluded movies
        with score ``-inf``.
        """
        scores = self.scores(queries)
        rows = exclude.value_rowids()
        columns = tf.cast(exclude.flat_values, tf.int64)
        scores = tf.tensor_scatter_nd_update(
            scores, tf.stack([rows, columns], axis=1), tf.fill(tf.shape(columns), tf.constant(-np.inf, scores.dtype))
        )
        values, positions = tf.math.top_k(scores, k=tf.minimum(tf.cast(k, tf.int32), tf.shape(scores)[1]))
        return values, tf.gather(self._identifiers, positions)


class SeenMovies(tf.Module):
    """Each training user's rated movies as positions in the catalog (the index's row order)."""

    def __init__(self, vocab: Vocabularies, catalog_ids: np.ndarray, train: pd.DataFrame) -> None:
        super().__init__(name="seen_movies")
        self.user_lookup = id_lookup(vocab.user_ids, "user_ids")
        splits, values = group_by_user(train, vocab, id_positions(pd.Index(catalog_ids), train["movie_id"]))
        self.splits = tf.Variable(splits, trainable=False, name="splits")
        self.values = tf.Variable(values, trainable=False, name="values")

    def __call__(self, user_id: tf.Tensor) -> tf.RaggedTensor:
        rows = tf.cast(self.user_lookup(user_id), tf.int64)
        starts = tf.gather(self.splits, rows)
        ends = tf.gather(self.splits, rows + 1)
        positions = tf.ragged.range(starts, ends)
        return tf.RaggedTensor.from_row_splits(tf.gather(self.values, positions.flat_values), positions.row_splits)


@dataclass(frozen=True)
class ScannParameters:
    """How a ScaNN index searches: a partition tree, quantized scoring, then exact re-scoring.

    Attributes:
        leaves: partitions of the catalog (k-means centres).
        leaves_to_search: partitions searched per query.
        reorder: candidates re-scored exactly (full-precision dot product) before the top k.
    """

    leaves: int
    leaves_to_search: int
    reorder: int

    @classmethod
    def for_catalog(cls, movies: int) -> ScannParameters:
        """Parameters chosen from the catalog size (``benchmark index`` measures them).

        About 2 * sqrt(movies) leaves, at most one per 100 movies; a searched fraction of
        0.1 * (1,000,000 / movies) ** 0.2 (a third at 2,000 movies, a quarter at 10,000, a
        tenth at a million); 4 * sqrt(movies) candidates re-scored, at least 1,000. On the
        benchmark's embeddings this kept recall@100 against brute force at 0.97 from 10,000 to
        1,000,000 movies (the README's table).
        """
        if movies < 1:
            raise ValueError(f"a ScaNN index needs at least one movie, got {movies}")
        leaves = max(1, min(int(round(2 * np.sqrt(movies))), movies // 100))
        fraction = min(1.0, 0.1 * (1_000_000 / movies) ** 0.2)
        return cls(leaves=leaves, leaves_to_search=max(1, int(np.ceil(leaves * fraction))),
                   reorder=min(movies, max(1000, int(4 * np.sqrt(movies)))))


class ScannIndex(tf.Module):
    """Approximate top-k with ScaNN, for catalogs too big for brute force.

    Same interface as :class:`SeenAwareBruteForce` (``__call__``, ``query_excluding``,
    ``num_candidates``). The searcher is built with ScaNN's own builder (a k-means tree,
    anisotropic asymmetric hashing for dot products, exact re-scoring), with parameters from
    :meth:`ScannParameters.for_catalog` unless given. Exclusion fetches ``k`` plus the longest
    exclusion list of the batch and drops excluded movies by a sorted-key membership test.
    A SavedModel holding it needs ``import scann`` before ``tf.saved_model.load`` (its ops
    are ScaNN's).

    Args:
        candidates: candidate embeddings [movies, dim].
        identifiers: movie ids [movies].
        parameters: leaves, leaves to search and re-scoring (default: from the catalog size).

    Examples:
        >>> index = ScannIndex(tf.random.normal([5000, 16]), tf.as_string(tf.range(5000)))  # doctest: +SKIP
        >>> scores, ids = index(tf.random.normal([2, 16]), k=10)  # doctest: +SKIP
    """

    def __init__(self, candidates: tf.Tensor, identifiers: tf.Tensor, parameters: ScannParameters | None = None) -> None:
        super().__init__(name="scann_index")
        try:
            from scann.scann_ops.py import scann_ops  # registers the ScaNN TensorFlow ops
        except ImportError as error:
            from tfrs_pipeline.errors import ConfigError

            raise ConfigError("retrieval.index = 'scann' needs ScaNN: pip install -e '.[scann]' "
                              "(TensorFlow 2.20 ops)") from error
        candidates = tf.convert_to_tensor(candidates, tf.float32)
        count = int(candidates.shape[0])
        self.parameters = parameters or ScannParameters.for_catalog(count)
        builder = scann_ops.builder(candidates, 100, "dot_product")
        if self.parameters.leaves > 1:
            builder = builder.tree(num_leaves=self.parameters.leaves,
                                   num_leaves_to_search=self.parameters.leaves_to_search,
                                   training_sample_size=min(count, 250_000))
        # 0.2 is ScaNN's recommended anisotropic threshold for dot-product search.
        builder = builder.score_ah(2, anisotropic_quantization_threshold=0.2)
        builder = builder.reorder(min(self.parameters.reorder, count))
        self.searcher = builder.build(shared_name=f"scann_index/{uuid.uuid4()}").serialize_to_module()
        self.identifiers = tf.Variable(identifiers, trainable=False, name="identifiers")
        self.count = tf.constant(count, tf.int32)
        self.num_candidates = count

    def _search(self, queries: tf.Tensor, k: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        from scann.scann_ops.py import scann_ops

        searcher = scann_ops.searcher_from_module(self.searcher)
        k = tf.minimum(tf.cast(k, tf.int32), self.count)
        # Re-scoring fewer candidates than k would return fewer than k.
        rescored = tf.minimum(tf.maximum(k, self.parameters.reorder), self.count)
        positions, scores = searcher.search_batched_parallel(queries, final_num_neighbors=k,
                                                             pre_reorder_num_neighbors=rescored)
        positions = tf.cast(positions, tf.int64)
        # ScaNN pads with NaN scores when a search finds fewer than k: those sort last.
        missing = tf.math.is_nan(scores) | (positions < 0)
        return tf.where(missing, tf.constant(-np.inf, scores.dtype), scores), tf.maximum(positions, 0)

    def __call__(self, queries: tf.Tensor, k: int | tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        scores, positions = self._search(queries, k)
        return scores, tf.gather(self.identifiers, positions)

    def query_excluding(self, queries: tf.Tensor, exclude: tf.RaggedTensor, k: int | tf.Tensor):
        width = tf.cast(tf.reduce_max(tf.concat([exclude.row_lengths(), [0]], axis=0)), tf.int32)
        scores, positions = self._search(queries, tf.cast(k, tf.int32) + width)
        count = tf.cast(self.count, tf.int64)
        # Each row's excluded positions are sorted, so row * count + position is sorted overall.
        excluded_keys = exclude.value_rowids() * count + tf.cast(exclude.flat_values, tf.int64)
        rows = tf.range(tf.shape(positions, out_type=tf.int64)[0])[:, None]
        keys = tf.reshape(rows * count + positions, [-1])
        if_found = tf.minimum(tf.searchsorted(excluded_keys, keys, out_type=tf.int64),
                              tf.maximum(tf.size(excluded_keys, out_type=tf.int64) - 1, 0))
        hit = tf.reshape(tf.equal(tf.gather(tf.concat([excluded_keys, [-1]], 0), if_found), keys), tf.shape(positions))
        scores = tf.where(hit, tf.constant(-np.inf, scores.dtype), scores)
        top, order = tf.math.top_k(scores, k=tf.minimum(tf.cast(k, tf.int32), tf.shape(scores)[1]))
        return top, tf.gather(self.identifiers, tf.gather(positions, order, batch_dims=1))


def serving_index(model, kind: str, embeddings: tf.Tensor | None = None):
    """The index a model is served with: its brute-force index, or ScaNN built from the same embeddings.

    Args:
        model: the trained retrieval model.
        kind: ``brute-force`` or ``scann``.
        embeddings: the catalog's candidate embeddings, if already computed.
    """
    if kind == "scann":
        return ScannIndex(model.candidate_embeddings() if embeddings is None else embeddings, model.catalog_ids)
    return model.index
