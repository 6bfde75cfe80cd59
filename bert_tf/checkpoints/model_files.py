"""The model a run uses: vocab, config, lowercasing and initial checkpoint, resolved together.

Each is taken from the flags, or from the directory of --init_checkpoint when omitted (a Hugging
Face directory, a bert_tf output directory, the folder of a Google checkpoint), and all are
checked against each other before any data is converted or model built.
"""

import dataclasses
from typing import Any, Dict, Optional, Sequence


from bert_tf import tokenization
from bert_tf.checkpoints import formats
from bert_tf.checkpoints.configs import BertConfig
from bert_tf.io import files as io_files


@dataclasses.dataclass
class ModelFiles:
  """The resolved vocab, config and lowercasing of the model a run uses."""
  vocab_file: Optional[str]  # None only where a task can do without (pretraining)
  config: BertConfig
  config_file: str  # where `config` was read, to name in errors
  do_lower_case: Optional[bool]
  init_checkpoint: Optional[str]

  def tokenizer(self) -> tokenization.FullTokenizer:
    return tokenization.FullTokenizer(self.vocab_file, self.do_lower_case)

  def settings(self) -> Dict[str, Any]:
    """What identifies the model for the output_dir guard: config values, vocab bytes, casing."""
    settings: Dict[str, Any] = {f"bert_config_file[{key}]": value
                                for key, value in self.config.to_dict().items()}
    if self.vocab_file:
      settings["vocab_file"] = "sha256:" + io_files.file_sha256(self.vocab_file)
    if self.do_lower_case is not None:
      settings["do_lower_case"] = self.do_lower_case
    return settings


def _vocab_beside(init_checkpoint: str) -> Optional[str]:
  """The vocab.txt in the directory of a checkpoint, if there is one."""
  return formats.file_beside(formats.checkpoint_directory(init_checkpoint), ["vocab.txt"])


def check_vocab_belongs_to_checkpoint(vocab_file: str, config: BertConfig,
                                      init_checkpoint: str, allow_smaller_vocab: bool) -> None:
  """Refuses a vocab other than the one beside the checkpoint, or one smaller than its trained
  embedding table: ids would mean other tokens, and the run would silently learn noise."""
  beside = _vocab_beside(init_checkpoint)
  if beside:
    if io_files.file_sha256(beside) != io_files.file_sha256(vocab_file):
      raise ValueError(f"--vocab_file={vocab_file} is not the vocab of --init_checkpoint="
                       f"{init_checkpoint}, which has its own {beside}: token ids would mean "
                       f"other tokens. Pass --vocab_file={beside}, or leave --vocab_file out.")
    return  # the checkpoint's own vocab, whatever its size
  size = len(tokenization.load_vocab(vocab_file))
  if size < config.vocab_size and not allow_smaller_vocab:
    raise ValueError(f"--vocab_file={vocab_file} has {size} tokens but --init_checkpoint="
                     f"{init_checkpoint} was trained with vocab_size={config.vocab_size}: it is "
                     "probably another model's vocab. Use the vocab the checkpoint was trained "
                     "with, or pass --allow_smaller_vocab if the smaller vocab is deliberate.")


def resolve(init_checkpoint: Optional[str], vocab_file: Optional[str],
            bert_config_file: Optional[str], do_lower_case: Optional[bool],
            special_tokens: Sequence[str] = tokenization.SPECIAL_TOKENS,
            vocab_required: bool = True, allow_smaller_vocab: bool = False) -> ModelFiles:
  """Fills vocab/config from `init_checkpoint` when omitted and checks that vocab, config and
  checkpoint agree. `do_lower_case` None: inferred from the vocab."""
  if vocab_required or not bert_config_file:
    vocab_file, config_file = formats.resolve_model_files(
        init_checkpoint, vocab_file, bert_config_file)
  else:
    config_file = bert_config_file
  config = BertConfig.from_json_file(config_file)
  if vocab_file:
    tokenization.check_vocab(vocab_file, special_tokens)
    formats.check_vocab_matches_config(vocab_file, config, config_file)
  if init_checkpoint:
    formats.check_checkpoint_matches_config(init_checkpoint, config, config_file)
    if vocab_file:
      check_vocab_belongs_to_checkpoint(vocab_file, config, init_checkpoint, allow_smaller_vocab)
  if vocab_file:
    do_lower_case = tokenization.resolve_do_lower_case(vocab_file, do_lower_case,
                                                       init_checkpoint)
  return ModelFiles(vocab_file, config, config_file, do_lower_case, init_checkpoint)
