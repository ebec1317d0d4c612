"""Export: what is written as SavedModels and served, as TensorFlow modules with named signatures.

* :mod:`~tfrs_pipeline.export.specs`: the tensor specs of every signature input.
* :mod:`~tfrs_pipeline.export.stages`: each stage as its own SavedModel module.
* :mod:`~tfrs_pipeline.export.two_stage`: :class:`TwoStagePipeline`, both stages in one module
  (candidates from :class:`~tfrs_pipeline.retrieval.candidates.CandidateRetriever`, ordered by
  the list ranker or the :mod:`~tfrs_pipeline.ranking.blend`).
* :mod:`~tfrs_pipeline.export.writer`: writes them into a model folder; nothing else calls
  ``tf.saved_model.save``.
"""
