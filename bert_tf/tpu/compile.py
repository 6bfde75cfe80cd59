"""Compiles exported HLO modules for a Cloud TPU topology with libtpu, on a machine without a TPU.

Runs in the TPU compile environment (`make tpu-compile-env`: jax, jaxlib and libtpu pinned in
requirements-tpu-compile.txt), never beside TensorFlow: tpu/plan.py starts it as

    .venv-tpu-compile/bin/python -m bert_tf.tpu.compile REQUEST.json RESULT.json

REQUEST names a topology (jax.experimental.topologies.get_topology_desc's name and options) and
HLO files (tpu/hlo_export.py); RESULT gets, per file, whether XLA's TPU compiler accepted it (else
its error), XLA's memory analysis (bytes of arguments, outputs, aliased outputs, temporaries,
code) and cost analysis (FLOPs) for one device of the topology. The steps:
jax.extend.mlir.hlo_to_stablehlo converts the HLO; TF's `mhlo.copy` ops (on variable outputs),
which the TPU legaliser refuses, are erased; the module is compiled for one device. These are
experimental JAX APIs, pinned, with a smoke test (tests/test_tpu_compile.py).
Imports nothing from TensorFlow or the rest of bert_tf.
"""

import json
import os
import sys
import time
from typing import Any, Dict, List

# No TPU here: compile only. Without these, libtpu asks GCE metadata for the TPU it runs on.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")

import jax  # pylint: disable=wrong-import-position
from jax._src import compiler  # pylint: disable=wrong-import-position
from jax._src.interpreters import mlir  # pylint: disable=wrong-import-position
from jax._src.lib import xla_client  # pylint: disable=wrong-import-position
from jax._src.lib.mlir import ir  # pylint: disable=wrong-import-position
from jax.experimental import topologies  # pylint: disable=wrong-import-position
from jax.extend import mlir as jax_mlir  # pylint: disable=wrong-import-position

# The optimizer's step counter (and the dropout generators' state) are int64.
jax.config.update("jax_enable_x64", True)

MEMORY_FIELDS = ("argument_size_in_bytes", "output_size_in_bytes", "alias_size_in_bytes",
                 "temp_size_in_bytes", "generated_code_size_in_bytes")


def _erase_copies(module: ir.Module) -> int:
  """Replaces every `mhlo.copy` by its operand; returns how many there were."""
  copies = []

  def walk(operation) -> None:
    for region in operation.regions:
      for block in region.blocks:
        for child in block.operations:
          if child.operation.name == "mhlo.copy":
            copies.append(child.operation)
          walk(child.operation)
  walk(module.operation)
  for copy in copies:
    copy.results[0].replace_all_uses_with(copy.operands[0])
    copy.erase()
  return len(copies)


def device(topology: str, options: Dict[str, Any]):
  """The first device of a compile-only TPU topology (e.g. "v5e:2x4")."""
  options = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
  return topologies.get_topology_desc(topology, "tpu", **options).devices[0]


def compile_hlo(hlo: bytes, target) -> Dict[str, Any]:
  """Compiles a serialized HloModuleProto for `target`; its memory and cost analysis, or error."""
  started = time.time()
  with mlir.make_ir_context():
    module = ir.Module.parse(jax_mlir.hlo_to_stablehlo(hlo))
    _erase_copies(module)
    options = compiler.get_compile_options(1, 1, device_assignment=[target])
    try:
      executable = target.client.compile(module, executable_devices=xla_client.DeviceList(
          (target,)), compile_options=options)
    except Exception as e:  # pylint: disable=broad-except  # XLA's error is the answer
      return dict(compiles=False, error=str(e), seconds=time.time() - started)
  stats = executable.get_compiled_memory_stats()
  costs = executable.cost_analysis()
  costs = costs[0] if isinstance(costs, list) else costs
  return dict(compiles=True, seconds=time.time() - started,
              memory={name: int(getattr(stats, name)) for name in MEMORY_FIELDS},
              flops=float(costs.get("flops", 0.0)))


def run(request: Dict[str, Any]) -> List[Dict[str, Any]]:
  """Compiles every HLO file of `request` for its topology."""
  target = device(request["topology"], request.get("options", {}))
  results = []
  for path in request["hlo_files"]:
    with open(path, "rb") as f:
      results.append(compile_hlo(f.read(), target))
  return results


def main(argv: List[str]) -> None:
  request_file, result_file = argv[1:]
  with open(request_file, encoding="utf-8") as f:
    request = json.load(f)
  results = run(request)
  with open(result_file + ".tmp", "w", encoding="utf-8") as f:
    json.dump(dict(jax=jax.__version__, results=results), f)
  os.replace(result_file + ".tmp", result_file)


if __name__ == "__main__":
  main(sys.argv)
