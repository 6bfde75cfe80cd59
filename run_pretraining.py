"""run_pretraining.py: not available yet in bert_tf (its issue has not landed).

The library pieces it will use (tokenizer, model, checkpoints, distribution, trainer) are in
bert_tf/; see README.md.
"""

import sys

if __name__ == "__main__":
  sys.exit("run_pretraining.py is not implemented yet in bert_tf; it is planned. "
           "run_squad.py and python -m bert_tf.extract_features work today.")
