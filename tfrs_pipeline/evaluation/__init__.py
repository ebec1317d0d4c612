"""Evaluation of an exported model, and how its figures are shown.

* :mod:`~tfrs_pipeline.evaluation.evaluate`: every figure of ``metrics.json``, measured on the export.
* :mod:`~tfrs_pipeline.evaluation.report`: the PNG plots of ``evaluate --report``.
* :mod:`~tfrs_pipeline.evaluation.summary`: the metrics as text, and the model card.
"""
