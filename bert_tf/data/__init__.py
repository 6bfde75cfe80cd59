"""Text to features to TFRecords to tf.data: SQuAD and classifier features, the record cache,
and the deterministic, resumable input pipelines."""
