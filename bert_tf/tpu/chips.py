"""Cloud TPU types the planner knows: their compile topology, replicas, HBM and peak FLOP/s.

Chip facts are Google's Cloud TPU documentation's "key specifications" tables (checked
2026-12-06): v3 (cloud.google.com/tpu/docs/v3): 123 bf16 TFLOP/s and 32 GiB HBM per chip, two
TensorCores; v4 (/tpu/docs/v4): 275 TFLOP/s, 32 GiB per chip, two TensorCores run as one
device (megacore); v5e (/tpu/docs/v5e): 197 TFLOP/s, 16 GB, one TensorCore; v5p
(/tpu/docs/v5p): 459 TFLOP/s, 95 GB, megacore; v6e (/tpu/docs/v6e): 918 TFLOP/s, 32 GB, one
TensorCore. v2's page has no table and points to Jouppi et al., "A Domain Specific
Supercomputer for Training Deep Neural Networks" (CACM 2020): 46 TFLOP/s and 16 GiB per chip,
two TensorCores. A "-8" type has 8 TensorCores: 4 chips for v2/v3/v4/v5p, 8 for v5e/v6e.
A replica (TPUStrategy's, what the compiled step runs on) is one TensorCore on v2/v3, one chip
elsewhere; HBM and peak below are per replica. Topology names and options follow
jax.experimental.topologies (MaxText's accelerator_to_spec_map uses the same: megacore for
v4/v5p). The compiler's own HBM limit decides what fits; these numbers only report.
"""

import dataclasses
from typing import Any, Dict

GIB = 1024 ** 3
GB = 1000 ** 3


@dataclasses.dataclass(frozen=True)
class TpuType:
  """One Cloud TPU accelerator type, as the TPU compiler and TPUStrategy see it."""
  name: str
  topology: str
  options: Dict[str, Any]
  chips: int
  replicas: int
  hbm_per_replica: int  # bytes
  peak_flops_per_replica: float  # bf16, FLOP/s

  @property
  def replica_kind(self) -> str:
    return "TensorCore" if self.replicas > self.chips else "chip"


def _megacore(chips_bounds):
  return dict(chip_config_name="megacore", chips_per_host_bounds=chips_bounds, num_slices=1,
              wrap=(False, False, False))


def _default(chips_bounds):
  return dict(chip_config_name="default", chips_per_host_bounds=chips_bounds, num_slices=1,
              wrap=(False, False, False))


TPU_TYPES: Dict[str, TpuType] = {t.name: t for t in (
    TpuType("v2-8", "v2:2x2", _default((2, 2, 1)), 4, 8, 8 * GIB, 46e12 / 2),
    TpuType("v3-8", "v3:2x2", _default((2, 2, 1)), 4, 8, 16 * GIB, 123e12 / 2),
    TpuType("v4-8", "v4:2x2x1", _megacore((2, 2, 1)), 4, 4, 32 * GIB, 275e12),
    TpuType("v5e-8", "v5e:2x4", _default((2, 4, 1)), 8, 8, 16 * GB, 197e12),
    TpuType("v5p-8", "v5p:2x2x1", _megacore((2, 2, 1)), 4, 4, 95 * GB, 459e12),
    TpuType("v6e-8", "v6e:2x4", _default((2, 4, 1)), 8, 8, 32 * GB, 918e12),
)}


def tpu_type(name: str) -> TpuType:
  """The TpuType called `name` (e.g. "v5e-8"); a ValueError listing the known ones otherwise."""
  if name not in TPU_TYPES:
    raise ValueError(f"--tpu={name}: unknown TPU type; known: {', '.join(TPU_TYPES)}.")
  return TPU_TYPES[name]
