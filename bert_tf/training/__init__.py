"""Distribution strategies, the one training loop and its optimizers, the best-checkpoint
keeper and the per-evaluation history."""
