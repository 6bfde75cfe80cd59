"""beam_pipelines: on DirectRunner with several workers, the local tools' output byte for byte."""

import dataclasses
import pathlib
import random

import pytest

from benchmarks.pretraining_data import write_korean_corpus
from bert_tf.corpus import beam_pipelines, clean_text, instances, shards
from bert_tf.corpus import create_pretraining_data as cpd
from tests.conftest import shared_path

TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "dog",
          "ran", "far", "away", "play", "##ing", "##ed", "a", "big", "red", "ball", "."]
SENTENCES = ["the cat sat on the mat .", "the dog ran far away .", "a big red ball .",
             "the cat played with a ball .", "the dog sat on a big mat ."]


def direct(mode: str = "multi_threading"):
  """Options for the runner DirectRunner runs batch pipelines on, with 2 workers: FnApiRunner,
  named so that DirectRunner's first try, Prism (a binary Beam 2.77 downloads from GitHub), is
  skipped and the worker count and mode apply."""
  return beam_pipelines.pipeline_options(
      "FnApiRunner", ["--direct_num_workers=2", f"--direct_running_mode={mode}"])


@pytest.fixture
def corpus(tmp_path):
  """Three files of 7, 2 and 9 documents (so windows of 4 span files), and a vocab."""
  vocab = tmp_path / "vocab.txt"
  vocab.write_text("".join(t + "\n" for t in TOKENS))
  for f, num_documents in enumerate((7, 2, 9)):
    documents = ["\n".join(random.Random(100 * f + d).sample(SENTENCES * 3, 3 + d % 6))
                 for d in range(num_documents)]
    (tmp_path / f"text{f}.txt").write_text("\n\n\n".join(documents) + "\n")
  return instances.DataConfig(input_file=str(tmp_path / "text*.txt"),
                              output_file=str(tmp_path / "local" / "data"), vocab_file=str(vocab),
                              do_lower_case=True, max_seq_length=32, max_predictions_per_seq=5,
                              dupe_factor=3, documents_per_shard=4)


def _files(directory: pathlib.Path):
  return {path.relative_to(directory).as_posix(): path.read_bytes()
          for path in sorted(directory.rglob("*")) if path.is_file()}


# Worker processes (multi_processing) check that each worker sets itself up; they take ~40 s a
# pipeline on 2 busy cores (each imports TensorFlow), so one case uses them.
# The dynamic-masking and masked-LM-only cases check that Beam's workers make the same windows
# of the other instance formats (threads: the setup is the same as the processes').
@pytest.mark.parametrize("whole_word, mode, formats", [
    (False, "multi_threading", {}),
    (True, "multi_processing", {}),
    (True, "multi_threading", {"masking": "dynamic"}),
    (False, "multi_threading", {"masking": "dynamic", "next_sentence_prediction": False})])
def test_pretraining_shards_and_metadata_are_the_local_ones(corpus, whole_word, mode, formats):
  local_config = dataclasses.replace(corpus, do_whole_word_mask=whole_word, **formats)
  local = cpd.create_pretraining_data(local_config, num_workers=1)
  beam_config = dataclasses.replace(local_config, output_file=local_config.output_file.replace(
      "local", "beam"))
  made = cpd.create_pretraining_data(beam_config, beam_options=direct(mode))
  local_dir = pathlib.Path(local_config.output_file).parent
  beam_dir = pathlib.Path(beam_config.output_file).parent
  assert len(local["files"]) == 5 and local["counts"]["instances"] > 50
  assert local["counts"]["documents"] == 18 and made["record_counts"] == local["record_counts"]
  expected = {name: content.replace(str(local_dir).encode(), str(beam_dir).encode())
              for name, content in _files(local_dir).items()}
  # Shards and metadata byte for byte (the metadata names its own output path), and the same
  # progress records; no part, spool or temporary file is left.
  assert _files(beam_dir) == expected
  assert not [name for name in expected if "scratch" in name or ".tmp-" in name]


def test_korean_text_cleaned_and_made_into_shards_as_locally(tmp_path):
  """Real Korean text in 3 files, --clean=kcbert (which ends documents where it drops a line),
  whole-word masking and KcBERT's vocab: the same shards and counts."""
  write_korean_corpus(str(tmp_path / "ko.txt"), max_lines=6000, corpus=shared_path("corpus_ko"))
  lines = (tmp_path / "ko.txt").read_text(encoding="utf-8").splitlines(keepends=True)
  for i in range(3):
    (tmp_path / f"ko{i}.txt").write_text("".join(lines[i * 2000:(i + 1) * 2000]), encoding="utf-8")
  config = instances.DataConfig(input_file=str(tmp_path / "ko?.txt"),
                                output_file=str(tmp_path / "local" / "ko"),
                                vocab_file=str(shared_path("vocabs", "kcbert-base-vocab.txt")),
                                do_lower_case=False, do_whole_word_mask=True, dupe_factor=2,
                                num_output_shards=4, clean="kcbert")
  local = cpd.create_pretraining_data(config)
  made = cpd.create_pretraining_data(
      dataclasses.replace(config, output_file=str(tmp_path / "beam" / "ko")), beam_options=direct())
  assert made["counts"] == local["counts"] and local["counts"]["instances"] > 1000
  for name in local["files"]:
    assert (tmp_path / "beam" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()


def test_pretraining_is_seeded_and_resumes(corpus):
  options = direct()
  first = cpd.create_pretraining_data(corpus, beam_options=options)
  output = pathlib.Path(corpus.output_file)
  before = _files(output.parent)
  (output.parent / first["files"][-1]).unlink()  # as if the run died while writing it
  (output.parent / "data.progress" / "shard-00004.json").unlink()
  (output.parent / "data.metadata.json").unlink()
  again = cpd.create_pretraining_data(corpus, beam_options=options)
  assert _files(output.parent) == before and again == first
  other = dataclasses.replace(corpus, random_seed=1,
                              output_file=corpus.output_file.replace("local", "seed"))
  cpd.create_pretraining_data(other, beam_options=options)
  assert (_files(pathlib.Path(other.output_file).parent)[first["files"][0]]
          != before[first["files"][0]])


def test_rerun_after_a_failed_shard_writes_only_the_unfinished_ones(corpus, monkeypatch):
  """A run that dies while writing shard 4: the rerun leaves the shards already written alone
  and writes the others, and the output is the local run's."""
  cpd.create_pretraining_data(corpus)
  expected = _files(pathlib.Path(corpus.output_file).parent)
  config = dataclasses.replace(corpus, output_file=corpus.output_file.replace("local", "beam"))
  write_shard = shards.write_shard

  def fail_on_shard_4(config, shard, num_shards, blocks):
    if shard == 4:
      raise ValueError("the machine went away")
    return write_shard(config, shard, num_shards, blocks)

  monkeypatch.setattr(shards, "write_shard", fail_on_shard_4)
  with pytest.raises(ValueError, match="the machine went away"):
    cpd.create_pretraining_data(config, beam_options=direct())
  monkeypatch.setattr(shards, "write_shard", write_shard)
  beam_dir = pathlib.Path(config.output_file).parent
  written = {p.name: p.stat().st_mtime_ns for p in beam_dir.glob("data-*")}
  assert "data-00004-of-00005" not in written
  cpd.create_pretraining_data(config, beam_options=direct())
  assert _files(beam_dir) == {name: content.replace(b"/local", b"/beam")
                              for name, content in expected.items()}
  assert {name: (beam_dir / name).stat().st_mtime_ns for name in written} == written


def test_bad_input_file_is_named_as_locally(corpus, tmp_path):
  path = tmp_path / "cp949.txt"
  path.write_bytes("the cat sat .\n\n".encode() + "고양이\n".encode("cp949"))
  with pytest.raises(ValueError, match=rf"^{path}, line 3: not valid UTF-8"):
    cpd.create_pretraining_data(dataclasses.replace(corpus, input_file=str(path)),
                                beam_options=direct())
  (tmp_path / "empty.txt").write_text("\n\n")
  with pytest.raises(ValueError, match=rf"No text in {tmp_path / 'empty.txt'}"):
    cpd.create_pretraining_data(dataclasses.replace(corpus, input_file=str(tmp_path / "empty.txt")),
                                beam_options=direct())


@pytest.mark.parametrize("runner, args, local_workers, message", [
    ("NoSuchRunner", [], False, "--runner=NoSuchRunner is not a Beam runner: use one of"),
    ("DirectRunner", ["--direct_num_workerz=2"], False,
     "Unknown Beam pipeline option.*--direct_num_workerz"),
    ("DirectRunner", ["--input_file=x"], False, "Unknown Beam pipeline option.*--input_file"),
    ("DirectRunner", ["stray"], False, r"Unexpected arguments after `--`: \['stray'\]"),
    ("DirectRunner", [], True, "--num_workers is the number of local processes"),
    ("DataflowRunner", ["--region=europe-west1"], False, "--setup_file=./setup.py")])
def test_bad_beam_options_are_refused_with_the_fix(runner, args, local_workers, message):
  with pytest.raises(ValueError, match=message):
    beam_pipelines.pipeline_options(runner, args, local_workers)


def test_dataflow_refuses_local_paths_before_any_work(corpus):
  options = beam_pipelines.pipeline_options("DataflowRunner", ["--setup_file=./setup.py"])
  with pytest.raises(ValueError, match=rf"workers cannot reach local paths: --input_file="
                                       rf"{corpus.input_file.replace('*', '0')}.*--vocab_file"):
    cpd.create_pretraining_data(corpus, beam_options=options)
  assert not pathlib.Path(corpus.output_file).parent.exists()


@pytest.fixture
def raw_text(tmp_path):
  """Files whose duplicates cross files, with blank runs at their edges, short lines and a file
  of blank lines only."""
  rng = random.Random(0)
  pool = [f"문장 번호 {i} 입니다 ㅋㅋㅋㅋ" for i in range(30)] + ["짧다", "  ", ""]
  contents = ["\n".join(rng.choice(pool) for _ in range(60)) + "\n",
              "\n\n" + "\n".join(rng.choice(pool) for _ in range(40)),
              "\n\n\n",
              "\n".join(rng.choice(pool) for _ in range(50)) + "\n\n"]
  for i, content in enumerate(contents):
    (tmp_path / f"raw{i}.txt").write_text(content)
  return str(tmp_path / "raw*.txt")


def test_clean_text_output_and_counts_are_the_local_ones(raw_text, tmp_path):
  local = clean_text.clean_files(raw_text, str(tmp_path / "local" / "clean.txt"))
  made = clean_text.clean_files(raw_text, str(tmp_path / "beam" / "clean.txt"),
                                beam_options=direct())
  assert made == local and local["dropped_duplicate"] > 50 and local["dropped_short"] > 5
  assert _files(tmp_path / "beam") == _files(tmp_path / "local")  # no scratch file is left


def test_clean_text_without_text_is_the_local_error(tmp_path):
  (tmp_path / "a.txt").write_text("\n짧다\n  \nㅋㅋㅋㅋㅋㅋㅋㅋㅋㅋ\n")
  output = tmp_path / "out" / "clean.txt"
  with pytest.raises(ValueError, match=rf"No text in {tmp_path / 'a.txt'} to clean: its 4 lines"):
    clean_text.clean_files(str(tmp_path / "a.txt"), str(output), beam_options=direct())
  assert not output.exists()
