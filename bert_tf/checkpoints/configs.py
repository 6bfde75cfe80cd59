"""BERT model configuration, read from Google `bert_config.json` or Hugging Face `config.json`.

The two formats disagree on one word: "gelu" means the tanh approximation in Google's
modeling.py (since 2019) but the exact erf form in Hugging Face. We keep the origin's meaning
by normalising activations to explicit names: "gelu" (tanh approximation) and "gelu_exact".
"""

import dataclasses
import json
from typing import Any, Callable, Dict

import tensorflow as tf
import tf_keras

GOOGLE = "google"
HUGGING_FACE = "huggingface"

# Hugging Face activation names mapped to ours (see the module docstring).
_HF_ACTIVATIONS = {
    "gelu": "gelu_exact",
    "gelu_new": "gelu",
    "gelu_pytorch_tanh": "gelu",
    "gelu_fast": "gelu",
    "relu": "relu",
    "silu": "swish",
    "swish": "swish",
    "tanh": "tanh",
}
_ACTIVATIONS: Dict[str, Callable[[tf.Tensor], tf.Tensor]] = {
    "gelu": lambda x: tf_keras.activations.gelu(x, approximate=True),
    "gelu_exact": lambda x: tf_keras.activations.gelu(x, approximate=False),
    "relu": tf.nn.relu,
    "swish": tf.nn.silu,
    "tanh": tf.tanh,
    "linear": tf.identity,
}


@dataclasses.dataclass(frozen=True)
class BertConfig:
  """Hyperparameters of a BERT encoder, with Google's field names."""
  vocab_size: int
  hidden_size: int = 768
  num_hidden_layers: int = 12
  num_attention_heads: int = 12
  intermediate_size: int = 3072
  hidden_act: str = "gelu"
  hidden_dropout_prob: float = 0.1
  attention_probs_dropout_prob: float = 0.1
  max_position_embeddings: int = 512
  type_vocab_size: int = 16
  initializer_range: float = 0.02
  layer_norm_eps: float = 1e-12

  def __post_init__(self):
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      number = isinstance(value, (int, float)) and not isinstance(value, bool)
      if field.type is int and not (number and isinstance(value, int) and value > 0):
        raise ValueError(f"{field.name}={value!r} must be a positive integer.")
      if field.type is float and not (number and 0 <= value < 1):
        raise ValueError(f"{field.name}={value!r} must be a number in [0, 1).")
    if self.hidden_act not in _ACTIVATIONS:
      raise ValueError(f"Unknown hidden_act {self.hidden_act!r}; expected one of "
                       f"{sorted(_ACTIVATIONS)}.")
    if self.hidden_size % self.num_attention_heads:
      raise ValueError(f"hidden_size={self.hidden_size} is not a multiple of "
                       f"num_attention_heads={self.num_attention_heads}.")

  @classmethod
  def from_dict(cls, values: Dict[str, Any], origin: str = GOOGLE) -> "BertConfig":
    """Builds a config from a Google (`origin="google"`) or Hugging Face dict; unknown keys are ignored."""
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: v for k, v in values.items() if k in known}
    if origin == HUGGING_FACE:
      act = values.get("hidden_act", "gelu")
      if act not in _HF_ACTIVATIONS:
        raise ValueError(f"Unsupported Hugging Face hidden_act {act!r}.")
      kwargs["hidden_act"] = _HF_ACTIVATIONS[act]
    if "vocab_size" not in kwargs:
      raise ValueError("The BERT config has no vocab_size.")
    return cls(**kwargs)

  @classmethod
  def from_json_file(cls, path: str) -> "BertConfig":
    """Reads a Google bert_config.json or a Hugging Face config.json (local or gs://)."""
    with tf.io.gfile.GFile(path, "r") as f:
      try:
        values = json.load(f)
      except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e}).") from e
    try:
      return cls.from_dict(values, origin=detect_origin(values))
    except (TypeError, ValueError) as e:
      raise ValueError(f"{path}: {e}") from e

  def to_dict(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)

  def to_json_string(self) -> str:
    """Our own format: Google's keys plus layer_norm_eps, activation names as normalised above."""
    return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

  def to_google_dict(self) -> Dict[str, Any]:
    """A dict for Google's modeling.py, which knows only "gelu" (tanh) among the GELUs."""
    values = self.to_dict()
    values.pop("layer_norm_eps")
    if self.hidden_act == "gelu_exact":
      values["hidden_act"] = "gelu"
    return values

  def to_hugging_face_dict(self) -> Dict[str, Any]:
    """A Hugging Face BertConfig dict with the same numerics."""
    values = self.to_dict()
    values["hidden_act"] = {"gelu": "gelu_new", "gelu_exact": "gelu",
                            "swish": "silu"}.get(self.hidden_act, self.hidden_act)
    values.update(model_type="bert", architectures=["BertModel"])
    return values

  def activation(self) -> Callable[[tf.Tensor], tf.Tensor]:
    return _ACTIVATIONS[self.hidden_act]

  @property
  def head_size(self) -> int:
    return self.hidden_size // self.num_attention_heads


def detect_origin(values: Dict[str, Any]) -> str:
  """Hugging Face configs carry model_type/architectures/layer_norm_eps; Google's do not."""
  hf_keys = {"model_type", "architectures", "transformers_version"}
  return HUGGING_FACE if hf_keys & values.keys() else GOOGLE
