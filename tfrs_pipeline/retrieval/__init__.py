"""Retrieval, the first stage: the two-tower model and the index over the whole catalog.

* :mod:`~tfrs_pipeline.retrieval.towers`: the query (user) and candidate (movie) towers.
* :mod:`~tfrs_pipeline.retrieval.model`: :class:`RetrievalModel` and :func:`train_retrieval`
  (``tfrs.tasks.Retrieval`` with factorized top-K metrics).
* :mod:`~tfrs_pipeline.retrieval.index`: the seen-aware brute-force index and ScaNN.
* :mod:`~tfrs_pipeline.retrieval.candidates`: :class:`CandidateRetriever`, query tower ->
  index -> seen movies excluded, as training and every exported signature use it.
"""
