"""Tensor specs of the exported signatures' inputs: every input has a real name (never ``input_1``).

``k`` is a scalar tensor input, so a loaded model answers any ``k`` (TFRS's own index,
traced with a Python ``k``, fails with "Could not find matching concrete function" when
a caller changes it).
"""

from __future__ import annotations

import tensorflow as tf

#: A batch of user ids.
USER_IDS = tf.TensorSpec([None], tf.string, name="user_id")
#: A batch of movie ids, one per row.
MOVIE_IDS = tf.TensorSpec([None], tf.string, name="movie_id")
#: A list of movie ids per row [batch, n].
MOVIE_ID_LISTS = tf.TensorSpec([None, None], tf.string, name="movie_ids")
#: The length of each returned list.
K = tf.TensorSpec([], tf.int32, name="k")
#: Movies never to return, per row [batch, n] ("" pads shorter rows).
EXCLUDE_MOVIE_IDS = tf.TensorSpec([None, None], tf.string, name="exclude_movie_ids")


def signature(*inputs: tf.TensorSpec):
    """``tf.function`` of an exported signature taking ``inputs``, traced without AutoGraph.

    Nothing exported has control flow on tensors, so AutoGraph's rewriting of its code would
    only cost time at every export.
    """
    return tf.function(input_signature=list(inputs), autograph=False)
