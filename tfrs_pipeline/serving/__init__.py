"""What is exported and served: TensorFlow modules with named signatures, and the pieces they share.

* :mod:`~tfrs_pipeline.serving.specs`: the tensor specs of every signature input.
* :mod:`~tfrs_pipeline.serving.candidates`: :class:`CandidateRetriever`, the one way
  candidates are retrieved (query tower, index, seen-movie exclusion, popular fallback).
* :mod:`~tfrs_pipeline.serving.blend`: the two-stage blend of retrieval logits and
  predicted ratings, in TensorFlow, used by serving and by the weight chosen at training.
* :mod:`~tfrs_pipeline.serving.stages`: each stage as its own SavedModel module.
* :mod:`~tfrs_pipeline.serving.pipeline`: :class:`TwoStagePipeline`, both stages in one module.

:mod:`tfrs_pipeline.export` writes these to a model folder; nothing else does.
"""
