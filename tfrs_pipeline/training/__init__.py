"""Training machinery both stages share, none of it specific to a model.

* :mod:`~tfrs_pipeline.training.loop`: ``fit`` with early stopping, progress and TensorBoard.
* :mod:`~tfrs_pipeline.training.step`: :class:`ScaledLossModel`, TFRS's training step with mixed-float16 loss scaling.
* :mod:`~tfrs_pipeline.training.result`: :class:`TrainingResult`, what a stage's training hands on.
* :mod:`~tfrs_pipeline.training.optimizers`: the optimizers by name, :class:`LazyAdam` among them.
* :mod:`~tfrs_pipeline.training.backup`: :class:`StageBackup`, so a crashed run resumes.
* :mod:`~tfrs_pipeline.training.distribute`: the distribution strategy (one device, mirrored, multi-worker).
* :mod:`~tfrs_pipeline.training.memory`: wall time and peak memory of each phase of a run, and the log's phase counter.
"""
