"""bert_tf: a TensorFlow 2 / Keras BERT pipeline, TPU-first, compatible with google-research/bert."""

__version__ = "0.1.0"
