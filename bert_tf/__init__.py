"""bert_tf: a TensorFlow 2 / Keras BERT pipeline, TPU-first, compatible with google-research/bert."""

import os

from bert_tf import _moved

__version__ = "0.1.0"

# TensorFlow's C++ start-up lines (CUDA stubs and "failed call to cuInit" on machines without a
# GPU, oneDNN and CPU-feature notes) are noise to every user of the scripts. TensorFlow reads
# TF_CPP_MIN_LOG_LEVEL once, at its first C++ log line, so this must run before TensorFlow is
# first imported: `python -m bert_tf.<tool>` always does; scripts import bert_tf first. Level 3
# also hides TensorFlow's later C++ ERROR lines; failures that stop a run still reach Python as
# exceptions. A value the user set is kept: TF_CPP_MIN_LOG_LEVEL=0 shows everything.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# bert_tf builds everything with tf_keras (Keras 2, what tf-models-official is built on). Unless
# told otherwise TensorFlow also imports Keras 3 for `tf.keras` as it starts: 2-3 s of every
# process's start on 2 cores, for a Keras nothing here uses. This makes `tf.keras` tf_keras, as
# tf-models-official expects; the same rule as above (set before TensorFlow, a user's value kept).
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

# `from bert_tf import io_utils`, `python -m bert_tf.clean_text`: the names before the modules
# were grouped into sub-packages still work (bert_tf/_moved.py).
_moved.install()
