"""TFRecord files shared by every producer: tf.train.Feature helpers, shard names, the cache,
and a TFRecord writer and reader that need no TensorFlow.

Every producer of records (SQuAD and classifier features, create_pretraining_data) writes its
files, then a metadata JSON last: the metadata is the commit point. `cached_records` reuses the
files when the metadata describes what is wanted and every file it lists is intact (`damage`:
its size as written, its record count when listed), and otherwise removes the metadata first (so
nothing claims to be complete) and builds them again. Builds of TFRecord files return
"record_counts" (file name -> records), which data.pipeline reads so that a resumed training run
skips whole files without opening them.
"""

from __future__ import annotations  # tf.train.Feature in annotations: TensorFlow imported on use

import functools
import os
import struct
from typing import IO, TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Sequence

from absl import logging
import google_crc32c

from bert_tf.io import files as io_files

if TYPE_CHECKING:
  import tensorflow as tf

gfile = io_files.gfile


def int64_feature(values: Sequence[int]) -> tf.train.Feature:
  import tensorflow as tf  # pylint: disable=import-outside-toplevel,redefined-outer-name
  return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


# The TFRecord format: each record is framed as its length (uint64, little-endian), the masked
# CRC-32C of those 8 bytes (uint32), the data, and the masked CRC-32C of the data. Written here
# with google_crc32c (C, already a google-cloud-storage dependency) so that tools writing local
# files need not import TensorFlow: tf.io.TFRecordWriter writes the same bytes (tested).
FRAME_BYTES = 16
_LENGTH = struct.Struct("<Q")
_CRC = struct.Struct("<I")


def _masked_crc(data: bytes) -> int:
  crc = google_crc32c.value(data)
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


@functools.lru_cache(maxsize=4096)
def _header(length: int) -> bytes:
  """The 12 bytes before a record of `length` bytes (records of a kind have few lengths)."""
  packed = _LENGTH.pack(length)
  return packed + _CRC.pack(_masked_crc(packed))


def frame(record: bytes) -> bytes:
  """One record in TFRecord framing (what tf.io.TFRecordWriter.write appends to its file)."""
  return b"".join((_header(len(record)), record, _CRC.pack(_masked_crc(record))))


class TFRecordWriter:
  """tf.io.TFRecordWriter's output (uncompressed) for a local or gs:// path, without TensorFlow
  for local ones: `with TFRecordWriter(path) as writer: writer.write(record)`."""

  def __init__(self, path: str):
    self._file: IO[bytes] = gfile.GFile(path, "wb")

  def write(self, record: bytes) -> None:
    self._file.write(frame(record))

  def close(self) -> None:
    self._file.close()

  def __enter__(self) -> TFRecordWriter:
    return self

  def __exit__(self, *exc_info: Any) -> None:
    self.close()


def read_records(path: str) -> Iterator[bytes]:
  """The records of an uncompressed TFRecord file, their CRCs checked.

  Raises:
    ValueError: naming `path` for a truncated file or a CRC that does not match.
  """
  with gfile.GFile(path, "rb") as f:
    while True:
      header = f.read(12)
      if not header:
        return
      if len(header) < 12 or _CRC.unpack(header[8:])[0] != _masked_crc(header[:8]):
        raise ValueError(f"{path}: corrupted TFRecord length at byte {f.tell() - len(header)}.")
      (length,) = _LENGTH.unpack(header[:8])
      data, footer = f.read(length), f.read(4)
      if len(footer) < 4 or _CRC.unpack(footer)[0] != _masked_crc(data):
        raise ValueError(f"{path}: corrupted TFRecord data ending at byte {f.tell()}.")
      yield data


def count_frames(path: str) -> int:
  """The records of an uncompressed TFRecord file, from its frame headers alone (a 12-byte read
  and a seek per record: cheap beside reading the data).

  Raises:
    ValueError: naming `path` for a corrupted length or a file that ends inside a record.
  """
  size = gfile.stat(path).length
  count = 0
  with gfile.GFile(path, "rb") as f:
    position = 0
    while position < size:
      header = f.read(12)
      if len(header) < 12 or _CRC.unpack(header[8:])[0] != _masked_crc(header[:8]):
        raise ValueError(f"{path}: corrupted TFRecord length at byte {position}.")
      position += 12 + _LENGTH.unpack(header[:8])[0] + 4
      if position > size:
        raise ValueError(f"{path}: the file ends inside record {count} (truncated).")
      f.seek(position)
      count += 1
  return count


def file_sizes(directory: str, names: Sequence[str]) -> Dict[str, int]:
  """Bytes of each file (names relative to `directory`), as metadata records them at write time."""
  return {name: gfile.stat(io_files.join_under(directory, name)).length for name in names}


def damage(metadata_path: str, metadata: Dict[str, Any],
           names: Optional[Sequence[str]] = None) -> Optional[str]:
  """What is wrong with the files `metadata` lists (or those of `names`), or None when every one
  exists with the size recorded when it was written ("file_sizes") and, for a local TFRecord file
  with a recorded count ("record_counts"), that many records."""
  directory = os.path.dirname(metadata_path)
  sizes, counts = metadata.get("file_sizes", {}), metadata.get("record_counts", {})
  for name in metadata.get("files", []) if names is None else names:
    path = io_files.join_under(directory, name)
    if not gfile.exists(path):
      return f"{path} is missing"
    size = gfile.stat(path).length
    if name in sizes and size != sizes[name]:
      return f"{path} is {size:,} bytes, {sizes[name]:,} when it was written (cut short or damaged)"
    if name in counts and not io_files.is_url(path):  # a read per record: slow over HTTP
      try:
        found = count_frames(path)
      except ValueError as e:
        return str(e).rstrip(".")
      if found != counts[name]:
        return f"{path} holds {found:,} records, {counts[name]:,} when it was written"
  return None


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
  """The metadata at `path` if it records `key` and every file it lists is intact, else None."""
  if not gfile.exists(path):
    return None
  cached = io_files.read_json(path)
  changed = sorted(name for name in key if cached.get(name) != key[name])
  if changed:
    logging.info("Rebuilding the records of %s: %s changed.", path, ", ".join(changed))
    return None
  problem = damage(path, cached)
  if problem:
    logging.warning("Rebuilding the records of %s: %s.", path, problem)
    return None
  return cached


def cached_records(metadata_path: str, key: Dict[str, Any],
                   build: Callable[[], Dict[str, Any]]) -> Dict[str, Any]:
  """Records built once: the metadata of a valid cache, or of a fresh `build()`.

  `key` holds everything the records depend on. `build` writes the files (each atomically) and
  returns what describes them, with "files": their names relative to the metadata's directory.
  The metadata ({**key, **built} and the files' sizes) is written last, atomically; a stale one
  is removed before the build, and the files it listed that the new build did not write are
  deleted after it.
  """
  cached = _valid_metadata(metadata_path, key)
  if cached is not None:
    counts = ", ".join(f"{name} {value}" for name, value in cached.items()
                       if name not in key and isinstance(value, int))
    logging.info("Reusing the cached records of %s (%s).", metadata_path, counts)
    return cached
  stale: List[str] = []
  if gfile.exists(metadata_path):
    stale = io_files.read_json(metadata_path).get("files", [])
    gfile.remove(metadata_path)
  built = build()
  directory = os.path.dirname(metadata_path)
  for name in set(stale) - set(built["files"]):
    path = io_files.join_under(directory, name)
    if gfile.exists(path):
      gfile.remove(path)
  metadata = {**key, **built, "file_sizes": file_sizes(directory, built["files"])}
  io_files.write_json_atomic(metadata_path, metadata)
  return metadata
