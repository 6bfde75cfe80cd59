"""TFRecord files shared by every producer: tf.train.Feature helpers, shard names, the cache.

Every producer of records (SQuAD and classifier features, create_pretraining_data) writes its
files, then a metadata JSON last: the metadata is the commit point. `cached_records` reuses the
files when the metadata describes what is wanted and every file it lists exists, and otherwise
removes the metadata first (so nothing claims to be complete) and builds them again. Builds of
TFRecord files return "record_counts" (file name -> records), which data.pipeline reads so that
a resumed training run skips whole files without opening them.
"""

import os
from typing import Any, Callable, Dict, List, Optional, Sequence

import tensorflow as tf
from absl import logging

from bert_tf import io_utils


def int64_feature(values: Sequence[int]) -> tf.train.Feature:
  return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def shard_name(filename: str, index: int, num_shards: int) -> str:
  """google-research's shard name: FILENAME-0000I-of-0000N."""
  return f"{filename}-{index:05d}-of-{num_shards:05d}"


def shard_names(filename: str, num_shards: int) -> List[str]:
  """The files of `num_shards` shards: `filename` itself for one, else FILENAME-0000I-of-0000N."""
  if num_shards == 1:
    return [filename]
  return [shard_name(filename, index, num_shards) for index in range(num_shards)]


def shard_pattern(filename: str, num_shards: int) -> str:
  """A glob that matches exactly the files of `shard_names(filename, num_shards)`."""
  return filename if num_shards == 1 else f"{filename}-*-of-{num_shards:05d}"


def _valid_metadata(path: str, key: Dict[str, Any]) -> Optional[Dict[str, Any]]:
  """The metadata at `path` if it records `key` and every file it lists exists, else None."""
  if not tf.io.gfile.exists(path):
    return None
  cached = io_utils.read_json(path)
  changed = sorted(name for name in key if cached.get(name) != key[name])
  if changed:
    logging.info("Rebuilding the records of %s: %s changed.", path, ", ".join(changed))
    return None
  directory = os.path.dirname(path)
  missing = [name for name in cached.get("files", [])
             if not tf.io.gfile.exists(io_utils.join_under(directory, name))]
  if missing:
    logging.info("Rebuilding the records of %s: %s missing.", path, ", ".join(missing))
    return None
  return cached


def cached_records(metadata_path: str, key: Dict[str, Any],
                   build: Callable[[], Dict[str, Any]]) -> Dict[str, Any]:
  """Records built once: the metadata of a valid cache, or of a fresh `build()`.

  `key` holds everything the records depend on. `build` writes the files (each atomically) and
  returns what describes them, with "files": their names relative to the metadata's directory.
  The metadata ({**key, **built}) is written last, atomically; a stale one is removed before the
  build, and the files it listed that the new build did not write are deleted after it.
  """
  cached = _valid_metadata(metadata_path, key)
  if cached is not None:
    counts = ", ".join(f"{name} {value}" for name, value in cached.items()
                       if name not in key and isinstance(value, int))
    logging.info("Reusing the cached records of %s (%s).", metadata_path, counts)
    return cached
  stale: List[str] = []
  if tf.io.gfile.exists(metadata_path):
    stale = io_utils.read_json(metadata_path).get("files", [])
    tf.io.gfile.remove(metadata_path)
  built = build()
  directory = os.path.dirname(metadata_path)
  for name in set(stale) - set(built["files"]):
    path = io_utils.join_under(directory, name)
    if tf.io.gfile.exists(path):
      tf.io.gfile.remove(path)
  metadata = {**key, **built}
  io_utils.write_json_atomic(metadata_path, metadata)
  return metadata
