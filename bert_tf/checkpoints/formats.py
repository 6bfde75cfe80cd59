"""Initial checkpoints in every format BERT comes in, detected from the path.

`load_init_checkpoint(model, init_checkpoint)` reads
  * a Google TF1 checkpoint (`.../bert_model.ckpt`, or the directory that holds it), with
    Google's variable names, from pre-training, run_classifier or run_squad;
  * a bert_tf TF2 checkpoint (`tf.train.Checkpoint(model=...)`, as the trainer writes) or an
    output directory holding some (its best model when it has one, else the latest: the rule
    of run_directory.model_checkpoint), or a run's best/;
  * a Hugging Face BERT directory (config.json + model.safetensors or pytorch_model.bin), with
    or without the `bert.` prefix.
It fails loudly when an encoder variable would keep its random initial value or a shape
disagrees, since either silently ruins fine-tuning; heads the source lacks are logged as freshly
initialised and source variables the model has no use for as unused.

One name space joins the formats: Google's TF1 names. `google_names(model)` maps each one to the
model variable and the reshaping between the two layouts; Hugging Face names are derived from
Google's by `hf_name`. Loading reads a source into Google names and assigns; exporting (see
checkpoints/convert.py) is the reverse.

Why our own map rather than tf-models-official's TF1 converter (official/nlp/tools/
tf1_bert_checkpoint_converter_lib.py): checked numerically, its encoder conversion is faithful (the
BertEncoder it writes gives outputs identical to ours on Google's tiny checkpoint), but it only
goes TF1 -> TF2, restores by Keras variable name (ours carry the model's prefix, so nothing
matches), writes the object graph of the legacy Functional BertEncoder (not BertEncoderV2's), and
renames the NSP head to one its pretrainer does not have, silently dropping it. We need TF1, TF2
and Hugging Face in both directions and a report of what was restored: one map serves all.
"""

import dataclasses
import functools
import io
import json
import os
import re
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import safetensors.numpy
import tensorflow as tf
import tf_keras
from absl import logging

from bert_tf import modeling, tokenization
from bert_tf.checkpoints.configs import BertConfig
from bert_tf.io import files as io_files, gcs, run_directory

TF1 = "tf1"
TF2 = "tf2"
HF = "hf"
FORMAT_NAMES = {TF1: "Google TF1 checkpoint", TF2: "bert_tf TF2 checkpoint",
                HF: "Hugging Face BERT directory"}

ENCODER = "encoder"
# Head attributes of modeling.py's models, in the order a converted model picks them.
HEADS = ("masked_lm", "next_sentence", "span_logits", "classifier")
# Google's names for the dense heads: run_pretraining's NSP, run_squad's and run_classifier's.
_DENSE_HEAD_PREFIXES = {"next_sentence": "cls/seq_relationship/", "span_logits": "cls/squad/",
                        "classifier": ""}

# Encoder variable names (relative to BertEncoderV2) and the Google name each one has.
_ENCODER_NAMES = (
    (r"word_embeddings/embeddings", "bert/embeddings/word_embeddings"),
    (r"position_embedding/embeddings", "bert/embeddings/position_embeddings"),
    (r"type_embeddings/embeddings", "bert/embeddings/token_type_embeddings"),
    (r"embeddings/layer_norm/(gamma|beta)", r"bert/embeddings/LayerNorm/\1"),
    (r"transformer/layer_(\d+)/self_attention/(query|key|value)/(kernel|bias)",
     r"bert/encoder/layer_\1/attention/self/\2/\3"),
    (r"transformer/layer_(\d+)/self_attention/attention_output/(kernel|bias)",
     r"bert/encoder/layer_\1/attention/output/dense/\2"),
    (r"transformer/layer_(\d+)/self_attention_layer_norm/(gamma|beta)",
     r"bert/encoder/layer_\1/attention/output/LayerNorm/\2"),
    (r"transformer/layer_(\d+)/intermediate/(kernel|bias)",
     r"bert/encoder/layer_\1/intermediate/dense/\2"),
    (r"transformer/layer_(\d+)/output/(kernel|bias)", r"bert/encoder/layer_\1/output/dense/\2"),
    (r"transformer/layer_(\d+)/output_layer_norm/(gamma|beta)",
     r"bert/encoder/layer_\1/output/LayerNorm/\2"),
    (r"pooler_transform/(kernel|bias)", r"bert/pooler/dense/\1"),
)
# TF1 optimizer state and counters, never model weights.
_TF1_IGNORED = re.compile(r"(^|/)(adam_[mv]|Adam(_\d+)?|global_step|beta[12]_power|"
                          r"good_steps|loss_scale|Momentum)$")
# A Google name each head has, to tell which heads a checkpoint holds.
_HEAD_BIASES = {"masked_lm": "cls/predictions/output_bias",
                "next_sentence": "cls/seq_relationship/output_bias",
                "span_logits": "cls/squad/output_bias", "classifier": "output_bias"}
# Hugging Face buffers and the MLM decoder weight, which is tied to the word embeddings.
_HF_IGNORED = re.compile(r"(^|\.)(position_ids|cls\.predictions\.decoder\.weight)$")
_HF_HEAD_NAMES = {
    "cls/predictions/output_bias": "cls.predictions.bias",
    "cls/seq_relationship/output_weights": "cls.seq_relationship.weight",
    "cls/seq_relationship/output_bias": "cls.seq_relationship.bias",
    "cls/squad/output_weights": "qa_outputs.weight",
    "cls/squad/output_bias": "qa_outputs.bias",
    "output_weights": "classifier.weight",
    "output_bias": "classifier.bias",
}
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_CHECKPOINT_FILE_SUFFIX = re.compile(r"\.(index|data-\d{5}-of-\d{5})$")
_MAX_LISTED = 10
_MAX_SHAPES_LISTED = 3  # a shape listing is long: a misfit message names only the first few


class GoogleVariable(NamedTuple):
  """A model variable under its Google name, and how Google's array is laid out."""
  variable: tf.Variable
  shape: Tuple[int, ...]  # the shape in a Google checkpoint
  transposed: bool  # Google stores the transpose: output_weights [n, H] for a Dense kernel [H, n]
  component: str  # "encoder" or the model's head attribute, e.g. "classifier"

  def from_google(self, value: np.ndarray) -> np.ndarray:
    """Google's array in the variable's layout and dtype."""
    value = value.T if self.transposed else value
    return np.asarray(value, self.variable.dtype.as_numpy_dtype).reshape(self.variable.shape)

  def to_google(self) -> np.ndarray:
    """The variable's value in Google's layout."""
    value = self.variable.numpy()
    if self.transposed:
      return np.ascontiguousarray(value.T)
    return value.reshape(self.shape)


def _google_shape(google_name: str, shape: Sequence[int]) -> Tuple[int, ...]:
  """BertEncoderV2 splits attention projections per head; Google keeps them [H, H] and [H]."""
  if "/attention/self/" in google_name:
    return (shape[0], shape[1] * shape[2]) if google_name.endswith("kernel") else (
        shape[0] * shape[1],)
  if google_name.endswith("/attention/output/dense/kernel"):
    return (shape[0] * shape[1], shape[2])
  return tuple(shape)


def _relative_name(variable: tf.Variable, scope: str) -> str:
  name = variable.name.split(":")[0]
  start = ("/" + name).find("/" + scope + "/")
  if start < 0:
    raise ValueError(f"Variable {name} is not under the scope {scope!r}.")
  return name[start + len(scope) + 1:]


def _encoder_names(encoder: tf_keras.Model) -> Dict[str, GoogleVariable]:
  names = {}
  for variable in encoder.variables:
    relative = _relative_name(variable, encoder.name)
    for pattern, template in _ENCODER_NAMES:
      match = re.fullmatch(pattern, relative)
      if match:
        google = match.expand(template)
        names[google] = GoogleVariable(variable, _google_shape(google, variable.shape), False,
                                       ENCODER)
        break
    else:
      raise ValueError(f"Encoder variable {variable.name} has no Google name: did "
                       "tf-models-official's BertEncoderV2 change? Update _ENCODER_NAMES.")
  return names


def _head_names(model: tf_keras.Model) -> Dict[str, GoogleVariable]:
  names = {}
  masked_lm = getattr(model, "masked_lm", None)
  if masked_lm is not None:
    for google, variable in (
        ("cls/predictions/transform/dense/kernel", masked_lm.dense.kernel),
        ("cls/predictions/transform/dense/bias", masked_lm.dense.bias),
        ("cls/predictions/transform/LayerNorm/gamma", masked_lm.layer_norm.gamma),
        ("cls/predictions/transform/LayerNorm/beta", masked_lm.layer_norm.beta),
        ("cls/predictions/output_bias", masked_lm.bias)):
      names[google] = GoogleVariable(variable, tuple(variable.shape), False, "masked_lm")
  for attribute, prefix in _DENSE_HEAD_PREFIXES.items():
    dense = getattr(model, attribute, None)
    if dense is not None:
      names[prefix + "output_weights"] = GoogleVariable(
          dense.kernel, tuple(reversed(dense.kernel.shape)), True, attribute)
      names[prefix + "output_bias"] = GoogleVariable(
          dense.bias, tuple(dense.bias.shape), False, attribute)
  return names


def google_names(model: tf_keras.Model) -> Dict[str, GoogleVariable]:
  """Maps the Google TF1 name of every variable of a built bert_tf model to that variable.

  Raises ValueError if a model variable has no Google name, so that none is silently skipped.
  """
  if not model.built:
    raise ValueError("The model has no variables yet: call modeling.build_model(model) first.")
  names = {**_encoder_names(model.encoder), **_head_names(model)}
  covered = {entry.variable.ref() for entry in names.values()}
  uncovered = [v.name for v in model.variables if v.ref() not in covered]
  if uncovered:
    raise ValueError(f"{type(model).__name__} has variables with no Google name: {uncovered}.")
  return names


def hf_name(google_name: str) -> Tuple[str, bool]:
  """Hugging Face's name for a Google variable, without the `bert.` prefix task models add,
  and whether Hugging Face stores the transpose (torch Linear weights are [out, in])."""
  if google_name in _HF_HEAD_NAMES:
    return _HF_HEAD_NAMES[google_name], False
  match = re.fullmatch(r"bert/embeddings/(\w+_embeddings)", google_name)
  if match:
    return f"embeddings.{match.group(1)}.weight", False
  path, leaf = google_name.removeprefix("bert/").rsplit("/", 1)
  path = re.sub(r"layer_(\d+)", r"layer.\1", path).replace("/", ".")
  leaf, transposed = {"kernel": ("weight", True), "gamma": ("weight", False),
                      "beta": ("bias", False), "bias": ("bias", False)}[leaf]
  return f"{path}.{leaf}", transposed


def _hf_candidates(google_name: str) -> List[Tuple[str, bool]]:
  """Names that may hold `google_name` in a Hugging Face file: with or without the `bert.`
  prefix, and the legacy LayerNorm gamma/beta names of old pytorch-pretrained-bert files."""
  name, transposed = hf_name(google_name)
  names = [name]
  if google_name.endswith(("/gamma", "/beta")):
    names.append(name.rsplit(".", 1)[0] + "." + google_name.rsplit("/", 1)[1])
  if google_name == "cls/predictions/output_bias":
    names.append("cls.predictions.decoder.bias")
  if google_name.startswith("bert/"):
    names = [prefix + n for n in names for prefix in ("bert.", "")]
  return [(n, transposed) for n in names]


@dataclasses.dataclass
class LoadReport:
  """What `load_init_checkpoint` did, in Google names."""
  path: str  # the checkpoint prefix or Hugging Face directory that was read
  format: str  # TF1, TF2 or HF
  restored: List[str]
  initialized: List[str]  # model variables the source lacks (heads only), left as initialised
  unused: List[str]  # source variables (TF2: checkpoint objects) the model has no place for
  components: List[str]  # "encoder" and the head attributes that were restored


def _listing(names: Sequence[str]) -> str:
  shown = ", ".join(names[:_MAX_LISTED])
  return shown + (f" (and {len(names) - _MAX_LISTED} more)" if len(names) > _MAX_LISTED else "")


class _Source:
  """A TF1 checkpoint or Hugging Face weights, read by Google name."""

  def __init__(self, path: str, fmt: str, shapes: Dict[str, Tuple[int, ...]],
               read: Callable[[str], np.ndarray],
               candidates: Callable[[str], List[Tuple[str, bool]]]):
    self.path = path
    self.format = fmt
    self.shapes = shapes  # native name -> shape, model weights only
    self._read = read
    self._candidates = candidates

  def find(self, google_name: str) -> Optional[Tuple[str, bool]]:
    """The native name holding `google_name` and whether it is stored transposed, or None."""
    return next(((name, transposed) for name, transposed in self._candidates(google_name)
                 if name in self.shapes), None)

  def google_shape(self, google_name: str) -> Optional[Tuple[int, ...]]:
    found = self.find(google_name)
    if found is None:
      return None
    shape = self.shapes[found[0]]
    return tuple(reversed(shape)) if found[1] else shape

  def read(self, google_name: str) -> np.ndarray:
    name, transposed = self.find(google_name)
    value = self._read(name)
    return value.T if transposed else value


def _tf1_source(prefix: str) -> _Source:
  reader = tf.train.load_checkpoint(prefix)
  shapes = {name: tuple(shape) for name, shape in reader.get_variable_to_shape_map().items()
            if not _TF1_IGNORED.search(name)}
  return _Source(prefix, TF1, shapes, reader.get_tensor, lambda name: [(name, False)])


def _read_bytes(path: str) -> bytes:
  with tf.io.gfile.GFile(path, "rb") as f:
    return f.read()


def _read_torch_state_dict(path: str) -> Dict[str, np.ndarray]:
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(
        f"{path} is a PyTorch pickle; reading it needs torch (pip install torch), or save the "
        "model as model.safetensors (transformers: model.save_pretrained(dir)) and point "
        "--init_checkpoint at that.") from e
  state = torch.load(io.BytesIO(_read_bytes(path)), map_location="cpu", weights_only=True)
  return {name: (tensor.float() if tensor.is_floating_point() else tensor).numpy()
          for name, tensor in state.items()}


def read_hf_weights(directory: str) -> Dict[str, np.ndarray]:
  """The tensors of a Hugging Face directory: model.safetensors, else pytorch_model.bin
  (safely, with torch's weights_only loader). Works on gs:// too."""
  safetensors_path = os.path.join(directory, "model.safetensors")
  if tf.io.gfile.exists(safetensors_path):
    if "://" in safetensors_path:
      return safetensors.numpy.load(_read_bytes(safetensors_path))
    return safetensors.numpy.load_file(safetensors_path)
  torch_path = os.path.join(directory, "pytorch_model.bin")
  if tf.io.gfile.exists(torch_path):
    return _read_torch_state_dict(torch_path)
  raise FileNotFoundError(f"{directory} has neither {' nor '.join(HF_WEIGHT_FILES)} "
                          "(sharded Hugging Face checkpoints are not supported).")


def _safetensors_shapes(path: str) -> Dict[str, Tuple[int, ...]]:
  """The tensor shapes of a safetensors file, from its header alone (an 8-byte little-endian
  length, then JSON). Read through tf.io.gfile, unlike safetensors.safe_open, so gs:// works."""
  with tf.io.gfile.GFile(path, "rb") as f:
    length = int.from_bytes(f.read(8), "little")
    try:
      header = json.loads(f.read(length))
    except ValueError as e:
      raise ValueError(f"{path} is not a safetensors file (its header is not JSON: {e}); "
                       "download it again.") from e
  tensors = {name: entry for name, entry in header.items() if name != "__metadata__"}
  listed = 8 + length + max((entry["data_offsets"][1] for entry in tensors.values()), default=0)
  held = tf.io.gfile.stat(path).length
  if held < listed:
    raise ValueError(f"{path} holds {held:,} bytes but its header lists {listed:,}: the file is "
                     "truncated (an interrupted download or copy?). Download it again and "
                     "compare its size with the source's.")
  return {name: tuple(entry["shape"]) for name, entry in tensors.items()}


def _hf_source(directory: str) -> _Source:
  """Shapes of model.safetensors come from its header, so a shape check reads no tensors; they
  are read on first use. A pytorch_model.bin pickle has no header: it is read whole."""
  config_path = os.path.join(directory, "config.json")
  model_type = io_files.read_json(config_path).get("model_type", "bert")
  if model_type != "bert":
    raise ValueError(f"{config_path}: model_type={model_type!r}; only BERT models can be loaded.")
  arrays = functools.cache(lambda: read_hf_weights(directory))
  safetensors_path = os.path.join(directory, "model.safetensors")
  if tf.io.gfile.exists(safetensors_path):
    shapes = _safetensors_shapes(safetensors_path)
  else:
    shapes = {name: a.shape for name, a in arrays().items()}
  shapes = {name: tuple(shape) for name, shape in shapes.items() if not _HF_IGNORED.search(name)}
  if "cls.predictions.bias" in shapes:
    shapes.pop("cls.predictions.decoder.bias", None)  # tied to it in older files
  return _Source(directory, HF, shapes, lambda name: arrays()[name], _hf_candidates)


def _source(fmt: str, path: str) -> _Source:
  """The TF1 or Hugging Face source at `path` (bert_tf TF2 checkpoints restore by object)."""
  return _hf_source(path) if fmt == HF else _tf1_source(path)


def _is_hf_directory(path: str) -> bool:
  return (tf.io.gfile.exists(os.path.join(path, "config.json")) and
          any(tf.io.gfile.exists(os.path.join(path, name)) for name in HF_WEIGHT_FILES))


def _checkpoint_prefix(path: str, flag: str) -> Optional[str]:
  """The TF checkpoint prefix at `path`: itself, or in a directory the one it means (a run's
  best model, else its latest: run_directory.model_checkpoint), else its only one."""
  if tf.io.gfile.isdir(path):
    chosen = run_directory.model_checkpoint(path)
    if chosen:
      return chosen.prefix
    prefixes = sorted(p[:-len(".index")] for p in tf.io.gfile.glob(os.path.join(path, "*.index")))
    if len(prefixes) > 1:
      raise ValueError(f"{path} holds several checkpoints and no 'checkpoint' file saying which "
                       f"is latest ({_listing(prefixes)}); name one as --{flag}.")
    return prefixes[0] if prefixes else None
  return path if tf.io.gfile.exists(path + ".index") else None


def _damaged(files: str, flag: str, prefix: str, what: str) -> ValueError:
  return ValueError(f"--{flag}={prefix}: {files} {what}: the checkpoint is truncated or damaged "
                    "(an interrupted download or copy?). Download or copy all its files again "
                    f"and compare their sizes with the source's (`ls -l {prefix}.*`).")


def _checked_tf_reader(prefix: str, flag: str) -> Any:
  """A reader of a TF checkpoint whose data files hold at least the bytes its index lists.

  A truncated data file otherwise loads fine and fails at the first tensor read with
  `IndexError: Read less bytes than requested`, naming no file; the sizes are checked from the
  index alone (strings have no fixed size and are not counted).
  """
  try:
    reader = tf.train.load_checkpoint(prefix)
  except tf.errors.OpError as e:
    raise _damaged(f"{prefix}.index", flag, prefix, f"cannot be read ({e.message})") from e
  shapes = reader.get_variable_to_shape_map()
  listed = sum(int(np.prod(shapes[name])) * dtype.size
               for name, dtype in reader.get_variable_to_dtype_map().items()
               if dtype != tf.string)
  data_files = tf.io.gfile.glob(prefix + ".data-*")
  held = sum(tf.io.gfile.stat(path).length for path in data_files)
  if held < listed:
    names = ", ".join(os.path.basename(path) for path in data_files) or "its data file"
    raise _damaged(names, flag, prefix, f"hold{'s' if len(data_files) == 1 else ''} {held:,} "
                   f"bytes but its index lists {listed:,}")
  return reader


def detect_format(init_checkpoint: str, flag: str = "init_checkpoint") -> Tuple[str, str]:
  """(TF1, TF2 or HF, the prefix or directory to read) for an --init_checkpoint value.

  Accepts a checkpoint prefix (or its .index/.data file), a directory holding checkpoints (a
  run's best model, else the latest), a Hugging Face directory or its weights file; local or
  gs://. `flag` is the command-line flag errors name (checkpoints/convert.py's is --input).
  """
  path = _CHECKPOINT_FILE_SUFFIX.sub("", init_checkpoint.rstrip("/"))
  if os.path.basename(path) in HF_WEIGHT_FILES:
    path = os.path.dirname(path)
  if tf.io.gfile.isdir(path) and _is_hf_directory(path):
    return HF, path
  prefix = _checkpoint_prefix(path, flag)
  if prefix is None:
    raise FileNotFoundError(
        f"--{flag}={init_checkpoint}: no checkpoint there. Expected a Google TF1 "
        "checkpoint prefix such as .../bert_model.ckpt (with its .index file), a directory "
        "holding TF checkpoints, or a Hugging Face directory with config.json and "
        f"{' or '.join(HF_WEIGHT_FILES)}.")
  names = list(_checked_tf_reader(prefix, flag).get_variable_to_shape_map())
  if any(name.startswith(f"model/{ENCODER}/") for name in names):
    return TF2, prefix
  if any(name.startswith("bert/") for name in names):
    return TF1, prefix
  roots = sorted({name.split("/")[0] for name in names})
  raise ValueError(f"--{flag}={prefix}: neither a Google BERT checkpoint (bert/... "
                   "variables) nor a bert_tf one (model/encoder/...); its variables start with "
                   f"{_listing(roots)}.")


def _vocab_hint(checkpoint_vocab: int, model_vocab: int, bert_config_file: Optional[str]) -> str:
  config = bert_config_file or "the BERT config"
  return (f"vocab_size disagrees: the checkpoint has {checkpoint_vocab} word embeddings but "
          f"{config} says vocab_size={model_vocab}. A wrong vocab_size (or a vocab.txt that does "
          "not belong to the checkpoint) gives out-of-range token ids and NaN losses; use the "
          "bert_config.json and vocab.txt that came with the checkpoint")


def _misfit(model: tf_keras.Model, path: str, fmt: str, bert_config_file: Optional[str],
            problems: Sequence[str], flag: str) -> ValueError:
  built_from = f" built from {bert_config_file}" if bert_config_file else ""
  return ValueError(f"--{flag}={path} ({FORMAT_NAMES[fmt]}) does not fit the "
                    f"{type(model).__name__}{built_from}: " + "; ".join(problems) + ".")


def _shape_mismatches(mismatches: Sequence[Tuple[str, Tuple[int, ...], Tuple[int, ...]]]
                      ) -> str:
  """One problem for all variables whose shapes disagree, naming the first few."""
  shown = [f"{name} is {list(shape)} there but {list(expected)} in the model"
           for name, shape, expected in mismatches[:_MAX_SHAPES_LISTED]]
  more = len(mismatches) - len(shown)
  return (f"{len(mismatches)} variables have other shapes: " + ", ".join(shown)
          + (f" (and {more} more)" if more else ""))


def _assign_from(model: tf_keras.Model, source: _Source, targets: Dict[str, GoogleVariable],
                 bert_config_file: Optional[str], flag: str) -> LoadReport:
  """Checks everything first, then assigns, so a misfit leaves the model untouched."""
  found: Dict[str, List[str]] = {}
  missing: Dict[str, List[str]] = {}
  mismatches = []
  for name, target in targets.items():
    shape = source.google_shape(name)
    (missing if shape is None else found).setdefault(target.component, []).append(name)
    if shape is not None and shape != target.shape:
      mismatches.append((name, shape, target.shape))
  problems = []
  if ENCODER in missing:
    problems.append("it lacks encoder variables that would keep their random initial values: "
                    + _listing(missing[ENCODER]))
  for component in [c for c in found if c != ENCODER and c in missing]:
    problems.append(f"its {component} head is incomplete, lacking {_listing(missing[component])}")
  for name, shape, expected in mismatches:
    if name == "bert/embeddings/word_embeddings" and shape[0] != expected[0]:
      problems.append(_vocab_hint(shape[0], expected[0], bert_config_file))
  if mismatches:
    problems.append(_shape_mismatches(mismatches))
  if problems:
    raise _misfit(model, source.path, source.format, bert_config_file, problems, flag)
  restored = [name for names in found.values() for name in names]
  for name in restored:
    targets[name].variable.assign(targets[name].from_google(source.read(name)))
  used = {source.find(name)[0] for name in restored}
  return LoadReport(path=source.path, format=source.format, restored=restored,
                    initialized=[name for names in missing.values() for name in names],
                    unused=sorted(set(source.shapes) - used), components=list(found))


def _model_components(model: tf_keras.Model) -> Dict[str, tf_keras.layers.Layer]:
  components = {ENCODER: model.encoder}
  components.update((h, getattr(model, h)) for h in HEADS if getattr(model, h, None) is not None)
  return components


def _restore_tf2(model: tf_keras.Model, prefix: str, targets: Dict[str, GoogleVariable],
                 bert_config_file: Optional[str], flag: str) -> LoadReport:
  """Restores the encoder and each head the checkpoint holds through the object graph.

  The trainer saves tf.train.Checkpoint(model=model, ...); the model's attributes are the same in
  every model class, so restoring `model.<component>` alone works from any of them and ignores
  the optimizer and the other heads.
  """
  in_checkpoint = {name.split("/")[1] for name, _ in tf.train.list_variables(prefix)
                   if name.startswith("model/")}
  restored = []
  for attribute, layer in _model_components(model).items():
    if attribute not in in_checkpoint:
      continue
    try:
      status = tf.train.Checkpoint(model=tf.train.Checkpoint(**{attribute: layer})).read(prefix)
      status.expect_partial().assert_existing_objects_matched()
    except (AssertionError, ValueError) as e:
      problems = [f"its {attribute} does not match the model's: {e}"]
      embeddings = targets["bert/embeddings/word_embeddings"].shape
      saved = [shape for name, shape in tf.train.list_variables(prefix)
               if re.search(r"/(_embedding_layer/embeddings|embedding_table)/\.ATTRIBUTES/", name)]
      if saved and saved[0][0] != embeddings[0]:
        problems.insert(0, _vocab_hint(saved[0][0], embeddings[0], bert_config_file))
      raise _misfit(model, prefix, TF2, bert_config_file, problems, flag) from e
    restored.append(attribute)
  return LoadReport(
      path=prefix, format=TF2,
      restored=[name for name, t in targets.items() if t.component in restored],
      initialized=[name for name, t in targets.items() if t.component not in restored],
      unused=sorted(f"model/{c}" for c in in_checkpoint - set(restored)), components=restored)


def load_init_checkpoint(model: tf_keras.Model, init_checkpoint: str,
                         bert_config_file: Optional[str] = None,
                         flag: str = "init_checkpoint") -> LoadReport:
  """Initialises a built bert_tf model from a checkpoint in any supported format.

  Raises ValueError, naming the variables, when an encoder variable is missing from the source or
  any shape disagrees (`bert_config_file` is only named in that message). Heads missing from the
  source stay as initialised and source variables without a place are ignored; both are logged.
  Errors name `flag` as the checkpoint's command-line flag.
  """
  targets = google_names(model)
  fmt, path = detect_format(init_checkpoint, flag)
  if fmt == TF2:
    report = _restore_tf2(model, path, targets, bert_config_file, flag)
  else:
    source = _source(fmt, path)
    report = _assign_from(model, source, targets, bert_config_file, flag)
  logging.info("Restored %d variables (%s) from %s %s.", len(report.restored),
               ", ".join(report.components), FORMAT_NAMES[fmt], path)
  if report.initialized:
    logging.warning("Not in %s, freshly initialised: %s", path, _listing(report.initialized))
  if report.unused:
    logging.info("In %s but unused by %s: %s", path, type(model).__name__,
                 _listing(report.unused))
  return report


def model_for_checkpoint(init_checkpoint: str, config: BertConfig,
                         flag: str = "init_checkpoint") -> tf_keras.Model:
  """A built model with the heads the checkpoint holds: BertPretrainer for MLM/NSP heads, else
  BertSpanLabeler (SQuAD), BertClassifier (num_labels from its weights) or BertModel."""
  fmt, path = detect_format(init_checkpoint, flag)
  heads: Dict[str, Tuple[int, ...]] = {}  # head attribute -> shape of its bias
  if fmt == TF2:
    for name, shape in tf.train.list_variables(path):
      parts = name.split("/")
      if parts[0] == "model" and parts[1] in HEADS:
        heads[parts[1]] = tuple(shape) if parts[2] == "bias" else heads.get(parts[1], ())
  else:
    source = _source(fmt, path)
    for head, bias in _HEAD_BIASES.items():
      shape = source.google_shape(bias)
      if shape is not None:
        heads[head] = shape
  if "masked_lm" in heads or "next_sentence" in heads:
    model = modeling.BertPretrainer(config)
  elif "span_logits" in heads:
    model = modeling.BertSpanLabeler(config)
  elif "classifier" in heads:
    model = modeling.BertClassifier(config, num_labels=heads["classifier"][0])
  else:
    model = modeling.BertModel(config)
  return modeling.build_model(model)


def google_arrays(model: tf_keras.Model,
                  names: Optional[Sequence[str]] = None) -> Dict[str, np.ndarray]:
  """The model's variables (or only `names`) as Google-layout arrays under Google names."""
  targets = google_names(model)
  return {name: targets[name].to_google() for name in (targets if names is None else names)}


def write_tf1_checkpoint(arrays: Dict[str, np.ndarray], prefix: str) -> None:
  """Writes a name-based checkpoint (prefix.index + prefix.data-*) with exactly these names,
  as Google's TF1 code reads with tf.train.init_from_checkpoint."""
  names = sorted(arrays)
  tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                    tensors=[tf.constant(arrays[name]) for name in names])


def to_hf_arrays(arrays: Dict[str, np.ndarray], prefix: str = "") -> Dict[str, np.ndarray]:
  """Google-named arrays under Hugging Face names; `prefix` ("bert.") goes before encoder names,
  as in Hugging Face's task models."""
  hf_arrays = {}
  for google, value in arrays.items():
    name, transposed = hf_name(google)
    name = prefix + name if google.startswith("bert/") else name
    hf_arrays[name] = np.ascontiguousarray(value.T if transposed else value)
  return hf_arrays


def write_safetensors(arrays: Dict[str, np.ndarray], path: str) -> None:
  """Writes a safetensors file (local or gs://) that transformers loads (format "pt")."""
  data = safetensors.numpy.save(arrays, metadata={"format": "pt"})
  with tf.io.gfile.GFile(path, "wb") as f:
    f.write(data)


def checkpoint_directory(init_checkpoint: str, flag: str = "init_checkpoint") -> str:
  """The directory of a checkpoint: a Hugging Face directory itself, else the prefix's folder."""
  _, path = detect_format(init_checkpoint, flag)
  return path if tf.io.gfile.isdir(path) else os.path.dirname(path)


def file_beside(directory: str, names: Sequence[str]) -> Optional[str]:
  """The first of `names` in a checkpoint's `directory` (for a run's best/, also in the run
  directory above it), or None."""
  for where in run_directory.model_file_directories(directory):
    for name in names:
      path = os.path.join(where, name)
      if tf.io.gfile.exists(path):
        return path
  return None


def resolve_model_files(init_checkpoint: Optional[str], vocab_file: Optional[str],
                        bert_config_file: Optional[str], flag: str = "init_checkpoint"
                        ) -> Tuple[str, str]:
  """(vocab_file, bert_config_file), each taken from the directory of --init_checkpoint (a
  Hugging Face directory, an output directory or the folder of a Google checkpoint) when not
  given. Raises ValueError naming the flag to pass when one cannot be found or read."""
  directory = None
  if init_checkpoint and not (vocab_file and bert_config_file):
    directory = checkpoint_directory(init_checkpoint, flag)

  def find(file_flag: str, given: Optional[str], names: Sequence[str]) -> str:
    if given:
      gcs.check_inputs_and_output({file_flag: given}, file_flag, None)
      return given
    if directory is None:
      raise ValueError(f"--{file_flag} is required: there is no --{flag} to find "
                       f"{names[0]} beside.")
    path = file_beside(directory, names)
    if path:
      logging.info("--%s not given: using %s.", file_flag, path)
      return path
    raise ValueError(f"--{file_flag} was not given and {directory} (from --{flag}="
                     f"{init_checkpoint}) has no {' or '.join(names)}; pass --{file_flag}=PATH.")

  return (find("vocab_file", vocab_file, ["vocab.txt"]),
          find("bert_config_file", bert_config_file, ["bert_config.json", "config.json"]))


def _config_shapes(config: BertConfig) -> Dict[str, Tuple[str, Tuple[int, ...]]]:
  """Google name -> (the config fields, the shape they imply) for a few telling variables."""
  hidden, last = config.hidden_size, config.num_hidden_layers - 1
  return {
      "bert/embeddings/word_embeddings": ("vocab_size, hidden_size",
                                          (config.vocab_size, hidden)),
      "bert/embeddings/position_embeddings": ("max_position_embeddings, hidden_size",
                                              (config.max_position_embeddings, hidden)),
      "bert/embeddings/token_type_embeddings": ("type_vocab_size, hidden_size",
                                                (config.type_vocab_size, hidden)),
      f"bert/encoder/layer_{last}/intermediate/dense/kernel": (
          "num_hidden_layers, hidden_size, intermediate_size", (hidden, config.intermediate_size)),
  }


# The same variables in a bert_tf (TF2) checkpoint.
_TF2_CHECKED = {
    "bert/embeddings/word_embeddings": "_embedding_layer/embeddings",
    "bert/embeddings/position_embeddings": "_position_embedding_layer/embeddings",
    "bert/embeddings/token_type_embeddings": "_type_embedding_layer/embeddings",
}


def _tf2_checked_name(google_name: str) -> str:
  layer = re.fullmatch(r"bert/encoder/layer_(\d+)/intermediate/dense/kernel", google_name)
  path = (f"_transformer_layers/{layer.group(1)}/_intermediate_dense/kernel" if layer
          else _TF2_CHECKED[google_name])
  return f"model/{ENCODER}/{path}/.ATTRIBUTES/VARIABLE_VALUE"


def check_checkpoint_matches_config(init_checkpoint: str, config: BertConfig,
                                    bert_config_file: Optional[str] = None,
                                    flag: str = "init_checkpoint") -> None:
  """Fails before any model is built or data converted when a checkpoint's embedding and layer
  shapes contradict the config. Reads shapes only: the TF index or the safetensors header (a
  pytorch_model.bin is unpickled, tensors only, as loading does)."""
  fmt, path = detect_format(init_checkpoint, flag)
  wanted = _config_shapes(config)
  if fmt == TF2:
    shapes = {name: tuple(shape) for name, shape in tf.train.list_variables(path)}
    if _tf2_checked_name("bert/embeddings/word_embeddings") not in shapes:
      return  # Another object layout: load_init_checkpoint checks it.
    found = {name: shapes.get(_tf2_checked_name(name)) for name in wanted}
  else:
    source = _source(fmt, path)
    found = {name: source.google_shape(name) for name in wanted}
  problems = []
  for name, (fields, expected) in wanted.items():
    shape = found[name]
    if shape is None:
      problems.append(f"it has no {name}, which {fields} imply")
    elif tuple(shape) != expected:
      if name == "bert/embeddings/word_embeddings" and shape[0] != expected[0]:
        problems.append(_vocab_hint(shape[0], expected[0], bert_config_file))
      problems.append(f"{name} is {list(shape)} there but {fields} make it {list(expected)}")
  if problems:
    own_config = os.path.join(path, "config.json") if fmt == HF else "bert_config.json"
    raise ValueError(
        f"--{flag}={path} ({FORMAT_NAMES[fmt]}) does not match "
        f"{bert_config_file or 'the BERT config'}: " + "; ".join(problems) + ". Use the "
        f"{own_config} that came with the checkpoint.")


def check_vocab_matches_config(vocab_file: str, config: BertConfig,
                               bert_config_file: Optional[str] = None) -> None:
  """Raises ValueError when the vocab has more tokens than config.vocab_size (their ids would
  index past the embedding table: NaN or garbage on GPU/TPU); warns when it has fewer."""
  vocab = tokenization.load_vocab(vocab_file)
  size = max(vocab.values()) + 1 if vocab else 0
  config_name = bert_config_file or "the BERT config"
  if size > config.vocab_size:
    raise ValueError(
        f"{vocab_file} has {size} tokens but {config_name} says vocab_size={config.vocab_size}: "
        f"ids {config.vocab_size}..{size - 1} would index past the word embeddings (NaN losses "
        "or garbage; GPUs and TPUs do not check). Use the vocab.txt and config that belong to "
        f"the checkpoint, or set vocab_size to {size} when pre-training from scratch.")
  if size < config.vocab_size:
    logging.warning("%s has %d tokens, fewer than vocab_size=%d in %s: the last %d embeddings "
                    "are never used.", vocab_file, size, config.vocab_size, config_name,
                    config.vocab_size - size)
