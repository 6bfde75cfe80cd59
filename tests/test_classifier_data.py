"""Classification data: each task's files, bad input, google-research's feature layout, caching."""

import itertools
import json
import pathlib

from hypothesis import given, settings, strategies as st
import numpy as np
import pytest
import tensorflow as tf

from bert_tf import tokenization
from bert_tf.data import classifier as classifier_data
from bert_tf.data import sentence_pairs
from conftest import PROJECT_ROOT, shared_path

VOCAB = str(PROJECT_ROOT / "sample_data" / "classifier" / "vocab.txt")


def _write(path: pathlib.Path, lines, encoding="utf-8") -> pathlib.Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes("".join(line + "\n" for line in lines).encode(encoding))
  return path


def _fields(examples):
  return [(e.text_a, e.text_b, e.label) for e in examples]


def test_cola_reads_the_raw_release_and_glue_test(tmp_path):
  _write(tmp_path / "in_domain_train.tsv", ["gj04\t1\t\tThe cat sat.", "gj04\t0\t*\tCat the sat."])
  _write(tmp_path / "in_domain_dev.tsv", ["gj04\t1\t\tA dog ran."])
  _write(tmp_path / "out_of_domain_dev.tsv", ["clc95\t0\t*\tRan dog a."])
  processor = classifier_data.get_processor("CoLA")
  assert processor.metric == "mcc"
  assert _fields(processor.get_train_examples(str(tmp_path))) == [
      ("The cat sat.", None, "1"), ("Cat the sat.", None, "0")]
  assert _fields(processor.get_dev_examples(str(tmp_path))) == [("A dog ran.", None, "1")]
  assert _fields(processor.get_test_examples(str(tmp_path))) == [("Ran dog a.", None, "0")]
  # GLUE's test.tsv wins over the raw release's stand-in: header, index and sentence, no label.
  _write(tmp_path / "test.tsv", ["index\tsentence", "0\tBirds sing."])
  test = processor.get_test_examples(str(tmp_path))
  assert _fields(test) == [("Birds sing.", None, None)]
  assert test[0].where.endswith("test.tsv, line 2")


def test_mrpc_pairs_with_quotes_kept_literally(tmp_path):
  header = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"
  _write(tmp_path / "train.tsv", [header, '1\t1\t2\tHe said "yes.\tHe agreed.'])
  _write(tmp_path / "test.tsv", ["index\t#1 ID\t#2 ID\t#1 String\t#2 String", "7\t1\t2\tA.\tB."])
  processor = classifier_data.get_processor("mrpc")
  assert _fields(processor.get_train_examples(str(tmp_path))) == [
      ('He said "yes.', "He agreed.", "1")]
  assert _fields(processor.get_test_examples(str(tmp_path))) == [("A.", "B.", None)]


@pytest.mark.parametrize("mismatched", [False, True])
def test_mnli_matched_and_mismatched_dev_sets(tmp_path, mismatched):
  def row(index, a, b, label):
    return "\t".join([str(index), "p1", "p2", "fiction", "(", "(", "x", "y", a, b, label, label])
  header = "\t".join(["index", "promptID", "pairID", "genre", "s1bp", "s2bp", "s1p", "s2p",
                      "sentence1", "sentence2", "label1", "gold_label"])
  _write(tmp_path / "train.tsv", [header, row(0, "A man eats.", "Someone eats.", "entailment")])
  _write(tmp_path / "dev_matched.tsv", [header, row(1, "Matched.", "M.", "neutral")])
  _write(tmp_path / "dev_mismatched.tsv", [header, row(2, "Mismatched.", "MM.", "contradiction")])
  processor = classifier_data.get_processor("mnli", mnli_mismatched=mismatched)
  assert processor.get_labels() == ["contradiction", "entailment", "neutral"]
  assert _fields(processor.get_train_examples(str(tmp_path))) == [
      ("A man eats.", "Someone eats.", "entailment")]
  expected = ("Mismatched.", "MM.", "contradiction") if mismatched else ("Matched.", "M.",
                                                                          "neutral")
  assert _fields(processor.get_dev_examples(str(tmp_path))) == [expected]


def test_xnli_any_language(tmp_path):
  _write(tmp_path / "multinli" / "multinli.train.ko.tsv",
         ["premise\thypo\tlabel", "그는 웃었다.\t그는 울었다.\tcontradictory"])
  dev_row = "{}\t{}\tbp1\tbp2\tp1\tp2\t{}\t{}\tpid\tid\tgenre"
  _write(tmp_path / "xnli.dev.tsv", [
      "language\tgold_label\ts1bp\ts2bp\ts1p\ts2p\tsentence1\tsentence2\tpromptID\tpairID\tgenre",
      dev_row.format("en", "neutral", "He left.", "He went."),
      dev_row.format("ko", "entailment", "비가 온다.", "날씨가 궂다.")])
  processor = classifier_data.get_processor("xnli", xnli_language="ko")
  assert _fields(processor.get_train_examples(str(tmp_path))) == [
      ("그는 웃었다.", "그는 울었다.", "contradiction")]  # XNLI-MT's spelling normalised
  assert _fields(processor.get_dev_examples(str(tmp_path))) == [
      ("비가 온다.", "날씨가 궂다.", "entailment")]
  with pytest.raises(ValueError, match=r"xnli.dev.tsv has no rows with 'de'.*en, ko"):
    classifier_data.get_processor("xnli", xnli_language="de").get_dev_examples(str(tmp_path))
  with pytest.raises(FileNotFoundError, match=r"multinli.train.de.tsv"):
    classifier_data.get_processor("xnli", xnli_language="de").get_train_examples(str(tmp_path))


def test_nsmc_korean_reviews(tmp_path):
  _write(tmp_path / "ratings_train.txt", [
      "id\tdocument\tlabel", '9976970\t"아 더빙.. 진짜 짜증나네요\t0', "3819312\t\t1",
      "10265843\t너무재밓었다그래서보는것을추천한다\t1"])
  examples = classifier_data.get_processor("nsmc").get_train_examples(str(tmp_path))
  # A lone quote is text (NSMC is not quoted) and an empty review is a valid example.
  assert _fields(examples) == [('"아 더빙.. 진짜 짜증나네요', None, "0"), ("", None, "1"),
                               ("너무재밓었다그래서보는것을추천한다", None, "1")]
  assert examples[0].guid == "train-2"
  _write(tmp_path / "ratings_test.txt", ["document\tlabel", "좋다\t1"])
  with pytest.raises(ValueError, match=r"ratings_test.txt, line 1: expected the nsmc header"):
    classifier_data.get_processor("nsmc").get_dev_examples(str(tmp_path))


def test_csv_with_quotes_commas_and_header_names(tmp_path):
  (tmp_path / "train.csv").write_text(
      'review,score,extra\n'
      '"Good, really good",10,x\n'
      '"She said ""wow""",2,y\n'
      '"two\nlines",10,z\n', encoding="utf-8")
  (tmp_path / "test.csv").write_text('review,extra\n"Fine, I guess",q\n', encoding="utf-8")
  table = classifier_data.TableFormat(text_a_column="review", label_column="score",
                                      has_header=True)
  processor = classifier_data.get_processor("csv", table=table)
  train = processor.get_train_examples(str(tmp_path))
  assert _fields(train) == [("Good, really good", None, "10"), ('She said "wow"', None, "2"),
                            ("two\nlines", None, "10")]
  assert processor.get_labels() == ["2", "10"]  # numeric order, not "10" < "2"
  assert _fields(processor.get_test_examples(str(tmp_path))) == [("Fine, I guess", None, None)]
  with pytest.raises(ValueError, match=r"no column 'stars'.*'review', 'score', 'extra'.*label_column"):
    classifier_data.get_processor("csv", table=classifier_data.TableFormat(
        text_a_column="review", label_column="stars", has_header=True)
    ).get_train_examples(str(tmp_path))


@pytest.mark.parametrize("task, lines", [
    ("tsv", ["sentence\tlabel", "좋은 영화\t1", "별로\t0", "최고\t1"]),
    ("csv", ["review,sentiment", "good,positive", "bad,negative"]),
    ("tsv", ["document\tpolarity", "a\t1", "b\t0"]),
])
def test_header_without_has_header_is_refused_before_it_becomes_a_class(tmp_path, task, lines):
  path = _write(tmp_path / f"train.{task}", lines)
  processor = classifier_data.get_processor(task)
  with pytest.raises(ValueError, match=rf"{path}, line 1 looks like a header: its label "
                                       r".* is in no other row.*--has_header=true"):
    processor.get_train_examples(str(tmp_path))
  table = classifier_data.TableFormat(has_header=True)
  examples = classifier_data.get_processor(task, table=table).get_train_examples(str(tmp_path))
  assert len(examples) == len(lines) - 1
  label_list = sorted({e.label for e in examples})
  with pytest.raises(ValueError, match="looks like a header"):  # also when the labels are listed
    classifier_data.get_processor(task, table=classifier_data.TableFormat(
        label_list=label_list)).get_train_examples(str(tmp_path))


def test_a_rare_first_label_is_not_taken_for_a_header(tmp_path):
  _write(tmp_path / "train.tsv", ["meh\tneutral", "good\tpositive", "bad\tnegative",
                                  "great\tpositive"])
  examples = classifier_data.get_processor("tsv").get_train_examples(str(tmp_path))
  assert [e.label for e in examples] == ["neutral", "positive", "negative", "positive"]
  _write(tmp_path / "train.tsv", ["odd\t2", "good\t1", "bad\t0"])  # a number is never a name
  assert len(classifier_data.get_processor("tsv").get_train_examples(str(tmp_path))) == 3
  _write(tmp_path / "dev.tsv", ["text\tlabel", "fine\t1"])
  with pytest.raises(ValueError, match=r"dev.tsv, line 1 looks like a header"):
    classifier_data.get_processor("tsv").get_dev_examples(str(tmp_path))


@pytest.mark.parametrize("rows, label_column, values", [
    # The text where the label should be: every value different and several words long.
    ([f"{'좋은' if i % 2 else '나쁜'} 영화 정말 {i}번째 리뷰\t{i % 2}" for i in range(40)], "0",
     "40 different values in 40 rows"),
    # An id column: numbers, nearly all different.
    ([f"{1000 + i}\treview {i}\t{i % 2}" for i in range(40)], "0",
     "40 different values in 40 rows"),
    # Few rows, but the labels are sentences.
    (["1\tthe plot was thin and slow", "0\tone of the best films this year"], "1",
     "2 different values in 2 rows"),
])
def test_a_label_column_that_holds_text_is_refused(tmp_path, rows, label_column, values):
  path = _write(tmp_path / "train.tsv", rows)
  table = classifier_data.TableFormat(text_a_column="1", label_column=label_column)
  with pytest.raises(ValueError) as error:
    classifier_data.get_processor("tsv", table=table).get_train_examples(str(tmp_path))
  message = str(error.value)
  assert message.startswith(f"{path}: --label_column={label_column} looks like text, not "
                            f"labels: {values} (")
  assert "Check --label_column and --text_a_column (the first row's columns are 0: " in message
  assert message.endswith("If these really are the classes, list them in --label_list.")


def test_many_classes_are_labels_when_rows_repeat_them_or_they_are_listed(tmp_path):
  rows = [f"request number {i}\tintent_{i % 30}" for i in range(60)]  # 30 classes, 2 rows each
  _write(tmp_path / "train.tsv", rows)
  processor = classifier_data.get_processor("tsv")
  assert len(processor.get_train_examples(str(tmp_path))) == 60
  assert len(processor.get_labels()) == 30
  rows = [f"request number {i}\tintent_{i}" for i in range(60)]  # one row a class: listed
  _write(tmp_path / "train.tsv", rows)
  table = classifier_data.TableFormat(label_list=[f"intent_{i}" for i in range(60)])
  assert len(classifier_data.get_processor("tsv", table=table).get_train_examples(
      str(tmp_path))) == 60


def test_tsv_bad_line_names_file_and_line(tmp_path):
  path = _write(tmp_path / "train.tsv", ["good one\tpos", "", "bad\tone\tpos", "ok\tneg"])
  processor = classifier_data.get_processor("tsv")
  with pytest.raises(ValueError, match=rf"{path}, line 3: expected 2 tab-separated columns, "
                                       "found 3"):
    processor.get_train_examples(str(tmp_path))
  _write(tmp_path / "train.tsv", ["a\t1", "b\t1", "c\t0", "d"])
  with pytest.raises(ValueError, match=r"train.tsv, line 4: expected 2 tab-separated"):
    processor.get_train_examples(str(tmp_path))


def test_csv_bad_row_names_file_and_line(tmp_path):
  path = _write(tmp_path / "train.csv", ['"a, quoted",pos', "plain,neg", "one,two,pos"])
  with pytest.raises(ValueError, match=rf"{path}, line 3: expected 2 comma-separated columns, "
                                       "found 3"):
    classifier_data.get_processor("csv").get_train_examples(str(tmp_path))


def test_label_outside_the_list_names_file_and_line(tmp_path):
  _write(tmp_path / "in_domain_train.tsv", ["s\t1\t\tFine.", "s\t1\t\tFine too.", "s\t2\t\tOdd."])
  with pytest.raises(ValueError, match=r"in_domain_train.tsv, line 3: label '2' is not one of "
                                       r"the task's 2 labels \('0', '1'\)"):
    classifier_data.get_processor("cola").get_train_examples(str(tmp_path))
  _write(tmp_path / "train.tsv", ["a\tpos", "b\tneg"])
  _write(tmp_path / "dev.tsv", ["c\tpos", "d\tmaybe"])
  processor = classifier_data.get_processor("tsv")
  with pytest.raises(ValueError, match=r"dev.tsv, line 2: label 'maybe'.*\('neg', 'pos'\)"):
    processor.get_dev_examples(str(tmp_path))
  labels = [f"intent_{i}" for i in range(300)]
  _write(tmp_path / "dev.tsv", ["c\tintent_1", "d\t" + "a long review, not a label " * 20])
  processor = classifier_data.get_processor("tsv", table=classifier_data.TableFormat(
      label_list=labels))
  with pytest.raises(ValueError) as error:  # the labels and the value are summarised
    processor.get_dev_examples(str(tmp_path))
  assert str(error.value).startswith(f"{tmp_path / 'dev.tsv'}, line 2: label 'a long review, ")
  assert "300 labels ('intent_0', 'intent_1', 'intent_2', 'intent_3', 'intent_4', ... (300 in " \
         "all))" in str(error.value)
  assert len(str(error.value)) - len(str(tmp_path)) < 250  # not 300 labels and a review


def test_undecodable_file_and_unknown_task(tmp_path):
  path = tmp_path / "train.tsv"
  path.write_bytes("ok\t1\n".encode() + "나쁨\t0\n".encode("euc-kr"))
  with pytest.raises(ValueError, match=r"train.tsv, line 2: not valid UTF-8"):
    classifier_data.get_processor("tsv").get_train_examples(str(tmp_path))
  with pytest.raises(ValueError, match=r"--task_name='sst9'.*cola, csv, mnli"):
    classifier_data.get_processor("sst9")


# Fuzzing: whatever a task's file holds, reading it (and converting what was read) either works
# or raises a ValueError that names the file; never another exception.
FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None)
FIELD = st.text(st.sampled_from(list("ab 01\"',\t\r\n\\") + ["가", "\x00", "\u2028", "\ufeff"]) |
                st.characters(codec="utf-8"), max_size=8)
TABLE = st.lists(st.lists(FIELD, max_size=5).map("\t".join) |
                 st.lists(FIELD, max_size=5).map(",".join), max_size=6).map("\n".join)
FUZZED_FILES = {"tsv": "train.tsv", "csv": "train.csv", "cola": "in_domain_train.tsv",
                "mrpc": "train.tsv", "mnli": "train.tsv", "nsmc": "ratings_train.txt",
                "xnli": "multinli/multinli.train.zh.tsv"}


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
  return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def fuzz_tokenizer():
  return tokenization.FullTokenizer(VOCAB, do_lower_case=False)


@FUZZ
@given(task=st.sampled_from(sorted(FUZZED_FILES)),
       content=st.binary(max_size=120) | TABLE.map(lambda text: text.encode("utf-8")))
def test_fuzz_task_files_read_or_name_the_file(fuzz_dir, fuzz_tokenizer, task, content):
  path = fuzz_dir / task / FUZZED_FILES[task]
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(content)
  processor = classifier_data.get_processor(task)
  try:
    examples = processor.get_train_examples(str(fuzz_dir / task))
  except ValueError as e:
    assert str(path) in str(e)
    return
  for index, example in enumerate(examples):
    feature = classifier_data.convert_single_example(index, example, processor.get_labels(), 16,
                                                     fuzz_tokenizer)
    assert len(feature.input_ids) == 16


def test_features_match_tf_models_reference(tmp_path):
  """Byte-for-byte the features of google-research's convert_single_example (via tf-models)."""
  reference = pytest.importorskip("official.nlp.data.classifier_data_lib")
  from official.nlp.tools import tokenization as reference_tokenization
  ours = tokenization.FullTokenizer(VOCAB, do_lower_case=False)
  theirs = reference_tokenization.FullTokenizer(VOCAB, do_lower_case=False)
  texts = ["The farmers carried the old bicycle near the river.", "배우들 연기가 정말 좋았어요",
           "The cat", "", "결말이 너무 지루했다, 스토리가 별로였어요 돈이 아깝다 " * 3]
  labels = ["0", "1"]
  for index, (a, b) in enumerate(itertools.product(texts, [None, *texts])):
    for max_seq_length in (8, 16, 64):
      example = classifier_data.InputExample(f"x-{index}", a, b, labels[index % 2])
      mine = classifier_data.convert_single_example(index, example, labels, max_seq_length, ours)
      google = reference.convert_single_example(
          index, reference.InputExample(f"x-{index}", a, b, labels[index % 2]), labels,
          max_seq_length, theirs)
      assert (mine.input_ids, mine.input_mask, mine.segment_ids, mine.label_id) == (
          google.input_ids, google.input_mask, google.segment_ids, google.label_id), (a, b)


def test_pair_truncation_pops_from_the_longer_side():
  tokens_a, tokens_b = list("abcdef"), list("xyz")
  sentence_pairs.truncate_seq_pair(tokens_a, tokens_b, 6)
  assert (tokens_a, tokens_b) == (list("abc"), list("xyz"))
  sentence_pairs.truncate_seq_pair(tokens_a, tokens_b, 4)
  assert (tokens_a, tokens_b) == (list("ab"), list("xy"))  # ties pop from b


def test_prepare_features_writes_google_names_and_reuses_the_file(tmp_path):
  tokenizer = tokenization.FullTokenizer(VOCAB, do_lower_case=False)
  examples = [classifier_data.InputExample("a", "The cat did not see the map.", None, "1"),
              classifier_data.InputExample("b", "스토리가 최고였다", "음악이 별로였어요", "0")]
  output = str(tmp_path / "eval.tf_record")
  written = classifier_data.prepare_features(examples, ["0", "1"], 16, tokenizer, output)
  assert written.num_examples == 2
  metadata = json.loads(pathlib.Path(output + ".json").read_text())
  assert metadata["record_counts"] == {"eval.tf_record": 2}  # lets a resume skip it unread
  record = tf.train.Example.FromString(next(iter(tf.data.TFRecordDataset(output))).numpy())
  assert sorted(record.features.feature) == ["input_ids", "input_mask", "is_real_example",
                                             "label_ids", "segment_ids"]
  batch = next(iter(tf.data.TFRecordDataset(output).batch(2).map(
      classifier_data.feature_parser(16))))
  assert batch["label_ids"].numpy().tolist() == [1, 0]
  assert batch["is_real_example"].numpy().tolist() == [1, 1]
  segments = batch["segment_ids"].numpy()[1]
  mask = batch["input_mask"].numpy()[1]
  assert segments.max() == 1 and np.all(segments[mask == 0] == 0)
  ids = tokenizer.convert_ids_to_tokens(batch["input_ids"].numpy()[1][mask == 1])
  assert ids[0] == "[CLS]" and ids.count("[SEP]") == 2 and ids[-1] == "[SEP]"

  stamp = pathlib.Path(output).stat().st_mtime_ns
  assert classifier_data.prepare_features(examples, ["0", "1"], 16, tokenizer,
                                          output).num_examples == 2
  assert pathlib.Path(output).stat().st_mtime_ns == stamp  # reused
  classifier_data.prepare_features(examples, ["1", "0"], 16, tokenizer, output)
  relabeled = next(iter(tf.data.TFRecordDataset(output).batch(2).map(
      classifier_data.feature_parser(16))))
  assert relabeled["label_ids"].numpy().tolist() == [0, 1]  # a new label order rewrote it


def test_real_cola_and_nsmc_heads(tmp_path):
  """The first few hundred lines of the real CoLA and NSMC-format files (when present)."""
  cola = shared_path("cola")
  nsmc = shared_path("nsmc_like")
  for source, target in ((cola / "in_domain_train.tsv", "cola/in_domain_train.tsv"),
                         (nsmc / "ratings_train.txt", "nsmc/ratings_train.txt")):
    with open(source, encoding="utf-8") as f:
      _write(tmp_path / target, [line.rstrip("\n") for line in itertools.islice(f, 300)])
  cola_examples = classifier_data.get_processor("cola").get_train_examples(
      str(tmp_path / "cola"))
  assert len(cola_examples) == 300
  assert {e.label for e in cola_examples} == {"0", "1"}
  assert all(e.text_a and e.text_b is None for e in cola_examples)
  nsmc_examples = classifier_data.get_processor("nsmc").get_train_examples(
      str(tmp_path / "nsmc"))
  assert len(nsmc_examples) == 299  # after the header
  assert {e.label for e in nsmc_examples} <= {"0", "1"}
  assert any("\uac00" <= ch <= "\ud7a3" for e in nsmc_examples[:20] for ch in e.text_a)
