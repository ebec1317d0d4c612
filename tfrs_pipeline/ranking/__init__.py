"""Ranking, the second stage: it orders retrieval's candidates and predicts each one's rating.

* :mod:`~tfrs_pipeline.ranking.rating`: :class:`RatingModel`, a predicted rating for any
  user and movie (configured by ``[rating]``).
* :mod:`~tfrs_pipeline.ranking.list_ranker`: :class:`ListRanker`, trained on retrieval's own
  candidate lists, which orders the candidates (configured by ``[ranker]``).
* :mod:`~tfrs_pipeline.ranking.neighbours`: the item-item weights (EASE or ItemKNN) behind
  the ranker's item-item feature and its explanations.
* :mod:`~tfrs_pipeline.ranking.factorization`: biased matrix factorization (ALS), stacked with the
  rating model and the rating baseline.
* :mod:`~tfrs_pipeline.ranking.cross_fit`: cross-fitted candidate lists from every training user
  (``ranker.cross_fit_folds``).
* :mod:`~tfrs_pipeline.ranking.blend`: the rating blend, the ordering used when the list ranker is off.
"""
