"""create_pretraining_data's windows and shards: a window's instances dealt over all the shards as
blocks of sort-keyed records, the local shuffle (part files, then one spool a shard), each shard
written once, sorted and atomically, with its progress record; and the readers of a data set's
metadata that training uses (count_instances, check_shards, check_data_vocab).
"""

import collections
import concurrent.futures
import contextlib
import copy
import hashlib
import json
import multiprocessing
import os
import random
import re
import struct
import tempfile
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from absl import logging

from bert_tf import tokenization
from bert_tf.corpus import instances, reading
from bert_tf.data import records
from bert_tf.io import files as io_files

gfile = io_files.gfile  # tf.io.gfile's functions; TensorFlow only for gs:// paths


def progress_dir(output_file: str) -> str:
  return output_file + ".progress"


def metadata_path(output_file: str) -> str:
  return output_file + ".metadata.json"


# State shared with worker processes (set before forking, so workers inherit it).
_WORKER: Dict[str, Any] = {}

# A block: records of one window and dupe pass bound for one shard, with their sort keys. The
# header holds the shard, the record count and the bytes of their TFRecord frames; then come the
# keys (uint64), the frames' lengths (uint32) and the frames. Windows emit blocks; a shard is
# written from all of its blocks in key order, whatever order they arrive in (_write_shard).
_BLOCK_HEADER = struct.Struct("<IIQ")


def _splitmix64(z: np.ndarray) -> np.ndarray:
  """splitmix64's finalizer on uint64s: a bijection that scatters consecutive numbers."""
  z = z + np.uint64(0x9E3779B97F4A7C15)
  z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
  z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
  return z ^ (z >> np.uint64(31))


def sort_keys(seed: int, window: int, first: int, count: int) -> np.ndarray:
  """The sort keys of records first, ..., first + count - 1 of `window`: pseudo-random, distinct
  (a bijection of (window, record)), a function of the seed and the record alone, so that any
  worker computes them and a shard's order does not depend on the runner."""
  numbers = (np.uint64(window) << np.uint64(32)) + np.arange(first, first + count, dtype=np.uint64)
  return _splitmix64(numbers ^ _splitmix64(np.array([seed % (1 << 64)], np.uint64)))


def _block(shard: int, keys: np.ndarray, frames: Sequence[bytes]) -> bytes:
  lengths = np.fromiter(map(len, frames), np.uint32, len(frames))
  return b"".join((_BLOCK_HEADER.pack(shard, len(frames), int(lengths.sum())),
                   keys.astype("<u8").tobytes(), lengths.astype("<u4").tobytes(), *frames))


def window_blocks(index: int, raw_documents: List[List[str]], counts: Dict[str, int]
                  ) -> Iterator[Tuple[int, bytes]]:
  """Tokenizes window `index`, makes its instances and yields them as (shard, block), a dupe
  pass at a time; `counts` gets the window's counts once all are yielded.

  Record j of the window (counted over its dupe passes) goes to shard (j + index) mod
  num_shards, so every shard gets a share of every window.
  """
  config: instances.DataConfig = _WORKER["config"]
  tokenizer: tokenization.FullTokenizer = _WORKER["tokenizer"]
  num_shards, encoder = _WORKER["num_shards"], _WORKER["encoder"]
  maker = copy.copy(_WORKER["maker"])  # its tables shared, its counts its own (Beam's threads)
  maker.stats = collections.Counter()
  documents: List[instances.Document] = []
  for lines in raw_documents:
    segments = [tokenizer.tokenize_to_ids(line) for line in lines]
    segments = [s for s in segments if s]
    if segments:
      documents.append(segments)
  rng = random.Random(config.random_seed * 1000003 + index)
  np_rng = np.random.default_rng([config.random_seed, index])
  stats = maker.stats
  stats["documents"] = len(documents)
  stats["sentences"] = sum(len(document) for document in documents)
  for _ in range(config.dupe_factor if documents else 0):
    made = []
    for document_index in range(len(documents)):
      made.extend(maker.instances(documents, document_index, rng))
    if not made:
      continue
    rng.shuffle(made)
    if config.masking == "dynamic":
      batch = maker.pad_batch(made)
    else:
      batch = maker.mask_batch(made, rng, np_rng)
    del made  # Peak memory: a pass's instances live once, as lists, arrays or records in turn.
    first = stats["instances"]
    stats["instances"] += len(batch.lengths)
    stats["random_next"] += int(batch.is_random_next.sum())
    stats["tokens"] += int(batch.lengths.sum())
    if batch.num_masked is not None:
      stats["masked"] += int(batch.num_masked.sum())
    frames = encoder.encode_batch(batch)
    del batch
    for i, record in enumerate(frames):  # framed in place: each record's bytes held once
      frames[i] = records.frame(record)
    keys = sort_keys(config.random_seed, index, first, len(frames))
    for offset in range(min(num_shards, len(frames))):
      yield ((first + offset + index) % num_shards,
             _block((first + offset + index) % num_shards, keys[offset::num_shards],
                    frames[offset::num_shards]))
  counts.update(stats)


def read_blocks(path: str, buffer: bytearray) -> Iterator[Tuple[int, memoryview]]:
  """The (shard, block)s of a local file of blocks, read whole in one call into `buffer` (at
  least the file's size): each block is a view of it, valid until the buffer is read into again.
  The caller reuses one buffer from file to file, so its pages are not faulted in afresh for
  every file (which cost more system time than the copying)."""
  size = gfile.stat(path).length
  data = memoryview(buffer)[:size]
  with gfile.GFile(path, "rb") as f:
    read = f.readinto(data)
  position = 0
  while read - position >= _BLOCK_HEADER.size:
    shard, count, frames = _BLOCK_HEADER.unpack_from(data, position)
    end = position + _BLOCK_HEADER.size + 12 * count + frames
    if end > read:
      break
    yield shard, data[position:end]
    position = end
  if position < size:
    raise ValueError(f"{path} ends in the middle of a block: a scratch file was cut short. "
                     "Delete it and rerun.")


def _largest(paths: Iterable[str]) -> bytearray:
  """A buffer for read_blocks as large as the largest of `paths`."""
  return bytearray(max((gfile.stat(path).length for path in paths), default=0))


def write_shard(config: instances.DataConfig, shard: int, num_shards: int,
                blocks: Iterable[bytes]) -> int:
  """Writes shard `shard` atomically, its records in sort-key order (so the same whatever order
  the blocks come in), then its progress record; returns its record count. Memory: the shard.

  Per block, only its header is read in Python; the records' keys and places are found with
  NumPy over all the blocks at once (a local shard has one block per window and dupe pass).
  """
  views, counts, sizes, keys, lengths = [], [], [], [], []
  for block in blocks:
    view = memoryview(block)
    _, count, size = _BLOCK_HEADER.unpack_from(view)
    keys_end = _BLOCK_HEADER.size + 8 * count
    keys.append(view[_BLOCK_HEADER.size:keys_end])
    lengths.append(view[keys_end:keys_end + 4 * count])
    views.append(view)
    counts.append(count)
    sizes.append(size)
  record_lengths = np.frombuffer(b"".join(lengths), "<u4").astype(np.int64)
  # A record's end among all the blocks' frames laid end to end, moved into its own block: past
  # the block's header, keys and lengths, less the frames of the blocks before it.
  frames_before = np.cumsum(sizes, dtype=np.int64) - sizes
  shifts = _BLOCK_HEADER.size + 12 * np.array(counts, np.int64) - frames_before
  ends = np.cumsum(record_lengths) + np.repeat(shifts, counts)
  order = np.argsort(np.frombuffer(b"".join(keys), "<u8"), kind="stable")
  ordered = [column[order].tolist() for column in
             (np.repeat(np.arange(len(views)), counts), ends - record_lengths, ends)]
  path = records.shard_name(config.output_file, shard, num_shards)
  with io_files.atomic_output(path) as tmp, gfile.GFile(tmp, "wb") as out:
    for begin in range(0, len(order), 4096):
      out.write(b"".join(views[source][start:end] for source, start, end in
                         zip(*(column[begin:begin + 4096] for column in ordered))))
  io_files.write_json_atomic(shard_progress(config.output_file, shard),
                             {"records": len(order), "bytes": gfile.stat(path).length})
  return len(order)


def sum_counts(counts: Iterable[Dict[str, int]]) -> Dict[str, int]:
  """The sum of counts, keys sorted (so its JSON is the same whatever order they come in)."""
  totals: Dict[str, int] = collections.Counter()
  for each in counts:
    totals.update(each)
  return {name: totals[name] for name in sorted(totals)}


def shard_progress(output_file: str, shard: int) -> str:
  return os.path.join(progress_dir(output_file), f"shard-{shard:05d}.json")


def counts_path(output_file: str) -> str:
  return os.path.join(progress_dir(output_file), "counts.json")


def scratch_dir(output_file: str, run_config: Dict[str, Any]) -> str:
  """Where the local run keeps its part and spool files: in OUTPUT_FILE.progress/ for a local
  output; on local disk for a gs:// one (a directory named after the run's settings, under
  $TMPDIR), so that only finished shards go to the bucket."""
  if not io_files.is_url(output_file):
    return os.path.join(progress_dir(output_file), "scratch")
  digest = hashlib.sha256(json.dumps(run_config, sort_keys=True).encode()).hexdigest()[:16]
  return os.path.join(tempfile.gettempdir(), f"bert_tf-pretraining-{digest}")


def _part_path(scratch: str, window: int) -> str:
  return os.path.join(scratch, f"window-{window:05d}.blocks")


def _window_counts_path(scratch: str, window: int) -> str:
  return os.path.join(scratch, f"window-{window:05d}.json")


def _spool_path(scratch: str, shard: int) -> str:
  return os.path.join(scratch, f"shard-{shard:05d}.blocks")


def _make_window(index: int, raw_documents: List[List[str]]) -> None:
  """Writes window `index`'s blocks to its part file and then its counts, each atomically."""
  scratch, counts = _WORKER["scratch"], {}
  with io_files.atomic_output(_part_path(scratch, index)) as tmp, gfile.GFile(tmp, "wb") as part:
    for _, block in window_blocks(index, raw_documents, counts):
      part.write(block)
  io_files.write_json_atomic(_window_counts_path(scratch, index), counts)


def _open_files_allowed(wanted: int) -> int:
  """How many files this process may hold open beside its others, after raising its soft
  limit towards the hard one when `wanted` needs it."""
  import resource  # pylint: disable=import-outside-toplevel  (POSIX only)
  soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
  needed = wanted + 64
  if soft != resource.RLIM_INFINITY and soft < needed:
    soft = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
  return wanted if soft == resource.RLIM_INFINITY else max(1, soft - 64)


def _spool(scratch: str, num_windows: int, shards: Sequence[int]) -> None:
  """Moves the windows' blocks to one spool file per shard of `shards`: each part file is read
  once, sequentially, in window order, and the spools are written through files held open, so
  the file operations grow as windows + shards, not as their product. (Beyond the open-file
  limit, the shards go in groups and each group reads the part files again.) Memory: the
  largest part file (one window's records)."""
  group = _open_files_allowed(len(shards))
  buffer = _largest(_part_path(scratch, window) for window in range(num_windows))
  for begin in range(0, len(shards), group):
    with contextlib.ExitStack() as stack:
      spools = {shard: stack.enter_context(gfile.GFile(_spool_path(scratch, shard), "wb"))
                for shard in shards[begin:begin + group]}
      for window in range(num_windows):
        for shard, block in read_blocks(_part_path(scratch, window), buffer):
          if shard in spools:
            spools[shard].write(block)


def shard_done(output_file: str, shard: int, num_shards: int) -> bool:
  """Whether shard `shard` was written and is still the size it was written at (a damaged or
  deleted shard is made again)."""
  progress = shard_progress(output_file, shard)
  if not gfile.exists(progress):
    return False
  path = records.shard_name(output_file, shard, num_shards)
  recorded = io_files.read_json(progress).get("bytes")
  return gfile.exists(path) and recorded in (None, gfile.stat(path).length)


def _shard_metadata_path(shard: str) -> Optional[str]:
  """Where the metadata of the data set a shard (OUTPUT_FILE-0000I-of-0000N) belongs to would be."""
  match = re.fullmatch(r"(.*)-\d{5}-of-\d{5}", shard)
  return metadata_path(match.group(1)) if match else None


def read_metadata(shard: str) -> Optional[Dict[str, Any]]:
  """The metadata of the data set a shard belongs to, if any."""
  path = _shard_metadata_path(shard)
  return io_files.read_json(path) if path and gfile.exists(path) else None


def count_instances(file_pattern: str) -> Optional[int]:
  """The instances in the files of `file_pattern` when their metadata covers exactly those
  files (None otherwise: counting a corpus's records would read all of it)."""
  files = io_files.list_files(file_pattern)
  metadata = read_metadata(files[0])
  if not metadata:
    return None
  directory = os.path.dirname(files[0])
  listed = sorted(os.path.join(directory, name) for name in metadata["files"])
  return metadata["counts"]["instances"] if listed == files else None


def check_shards(files: Sequence[str]) -> None:
  """Fails, naming the shard and the fix, when a shard of `files` differs from what its metadata
  recorded when create_pretraining_data wrote it (size, record count); shards without metadata
  pass."""
  metadata = read_metadata(files[0])
  if not metadata:
    return
  directory = os.path.dirname(files[0])
  listed = set(metadata.get("files", []))
  names = [os.path.basename(f) for f in files
           if os.path.dirname(f) == directory and os.path.basename(f) in listed]
  metadata_path = _shard_metadata_path(files[0])  # not None: it has metadata
  problem = records.damage(metadata_path, metadata, names)
  if problem:
    raise ValueError(f"{problem}; {os.path.basename(metadata_path)} records each shard as "
                     "written. Copy the shard again, or rerun create_pretraining_data with the "
                     "same flags: it makes damaged shards again.")


def check_data_vocab(shard: str, vocab_file: str) -> None:
  """Fails when `shard`'s metadata records another vocab than `vocab_file` (ids would mean other
  tokens, and the exported model would carry the wrong vocab.txt); data without metadata passes."""
  metadata = read_metadata(shard)
  recorded = metadata.get("vocab_sha256") if metadata else None
  if recorded and recorded != io_files.file_sha256(vocab_file):
    made_with = metadata.get("vocab_file")
    raise ValueError(f"{shard} was made with the vocab {made_with} (sha256 {recorded[:12]}...), "
                     f"not --vocab_file={vocab_file}. Pass the vocab the data was made with, or "
                     "recreate the data with this one.")


def init_worker(config: instances.DataConfig, num_shards: int,
                scratch: Optional[str] = None) -> None:
  """Sets up this process to make windows (window_blocks, and _make_window's part files in
  `scratch`); forked workers inherit it."""
  tokenizer = tokenization.FullTokenizer(config.vocab_file, config.do_lower_case)
  # Made once a process: they hold only tables of the vocab and the flags (30 ms for a 30k vocab).
  maker = instances.InstanceMaker(config, tokenizer.vocab)
  encoder = instances.ExampleEncoder(len(tokenizer.vocab), config.max_seq_length,
                           config.max_predictions_per_seq, config.next_sentence_prediction)
  _WORKER.update(config=config, num_shards=num_shards, scratch=scratch, tokenizer=tokenizer,
                 maker=maker, encoder=encoder)


def check_instances(config: instances.DataConfig, totals: Dict[str, int]) -> None:
  if not totals.get("instances"):
    raise ValueError(f"No training instance from {config.input_file}: its text holds no tokens "
                     "(only control characters or spaces?). Expected one sentence a line, a "
                     "blank line between documents.")


def make_shards_locally(config: instances.DataConfig, scratch: str, files: Sequence[str],
                         num_windows: int, window_size: int, num_shards: int,
                         todo_shards: List[int], num_workers: int) -> Dict[str, int]:
  """The local run: windows -> part files (in parallel), part files -> one spool a shard (one
  sequential pass), spool -> shard (sorted); returns the windows' counts. A rerun skips the
  windows whose part files remain, and the spool pass once it has finished."""
  output = config.output_file
  spooled = os.path.join(scratch, "spooled.json")
  if not (gfile.exists(spooled) and gfile.exists(counts_path(output)) and
          all(gfile.exists(_spool_path(scratch, shard)) for shard in todo_shards)):
    init_worker(config, num_shards, scratch)
    done = {i for i in range(num_windows) if gfile.exists(_window_counts_path(scratch, i))
            and gfile.exists(_part_path(scratch, i))}
    todo = ((i, window)
            for i, window in enumerate(reading.windows(files, config.clean, window_size))
            if i not in done)
    if num_workers <= 1:
      for index, window in todo:
        _make_window(index, window)
        _log_progress("window", index, num_windows)
    else:
      _run_parallel(todo, num_workers)
    totals = sum_counts(io_files.read_json(_window_counts_path(scratch, i))
                        for i in range(num_windows))
    check_instances(config, totals)
    logging.info("Spooling %d window(s) to %d shard(s).", num_windows, len(todo_shards))
    _spool(scratch, num_windows, todo_shards)
    io_files.write_json_atomic(counts_path(output), totals)
    io_files.write_json_atomic(spooled, {"shards": todo_shards})
    for i in range(num_windows):
      gfile.remove(_part_path(scratch, i))
  _write_shards(config, scratch, num_shards, todo_shards, num_workers)
  gfile.rmtree(scratch)
  return io_files.read_json(counts_path(output))


def _write_shards(config: instances.DataConfig, scratch: str, num_shards: int,
                  todo_shards: Sequence[int], num_workers: int) -> None:
  """Writes each shard of `todo_shards` from its spool. Shards are independent, so with several
  workers they are written in parallel (memory: a shard a worker); the spool pass before is
  one sequential read of the part files and stays in this process."""
  if num_workers <= 1 or len(todo_shards) <= 1:
    for n, shard in enumerate(todo_shards):
      _shard_from_spool(config, scratch, shard, num_shards)
      _log_progress("shard", n, len(todo_shards))
    return
  context = multiprocessing.get_context("fork")
  with concurrent.futures.ProcessPoolExecutor(min(num_workers, len(todo_shards)),
                                              mp_context=context) as pool:
    futures = [pool.submit(_shard_from_spool, config, scratch, shard, num_shards)
               for shard in todo_shards]
    for n, future in enumerate(concurrent.futures.as_completed(futures)):
      future.result()
      _log_progress("shard", n, len(todo_shards))


def _shard_from_spool(config: instances.DataConfig, scratch: str, shard: int,
                      num_shards: int) -> None:
  """Writes shard `shard` from its spool, then deletes the spool. The read buffer is kept for
  the process's next shard, so its pages are not faulted in afresh for every shard."""
  spool = _spool_path(scratch, shard)
  size = gfile.stat(spool).length
  if len(_WORKER.get("spool_buffer", b"")) < size:
    _WORKER["spool_buffer"] = bytearray(size)
  write_shard(config, shard, num_shards,
              (block for _, block in read_blocks(spool, _WORKER["spool_buffer"])))
  gfile.remove(spool)


def _log_progress(what: str, index: int, total: int) -> None:
  """Logs every tenth of the work (and its end)."""
  step = max(1, total // 10)
  if (index + 1) % step == 0 or index + 1 == total:
    logging.info("%s %d of %d done.", what, index + 1, total)


def _run_parallel(todo: Iterator[Tuple[int, List[List[str]]]], num_workers: int) -> None:
  """Runs windows in worker processes, with at most 2 windows per worker in memory at once."""
  context = multiprocessing.get_context("fork")
  with concurrent.futures.ProcessPoolExecutor(num_workers, mp_context=context) as pool:
    pending = set()
    for index, window in todo:
      if len(pending) >= 2 * num_workers:
        finished, pending = concurrent.futures.wait(
            pending, return_when=concurrent.futures.FIRST_COMPLETED)
        for future in finished:
          future.result()
      pending.add(pool.submit(_make_window, index, window))
    for future in concurrent.futures.as_completed(pending):
      future.result()
