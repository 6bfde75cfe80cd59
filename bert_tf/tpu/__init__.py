"""TPU planning without a TPU: chip facts, the plan, HLO export, the XLA compile check (jax)."""
