"""Features: where ratings become tensors.

* :mod:`~tfrs_pipeline.features.vocabulary`: the id vocabularies (training side only).
* :mod:`~tfrs_pipeline.features.tables`: per-movie and per-user feature tables.
* :mod:`~tfrs_pipeline.features.dataset`: ``tf.data`` pipelines and :func:`prepare`, which builds all of it.
* :mod:`~tfrs_pipeline.features.layers`: the Keras layers both stages share (id embeddings,
  side features, history pooling).
"""
