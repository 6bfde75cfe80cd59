"""bert_tf imports without cycles: no module reaches itself through imports of bert_tf modules,
counting the imports inside functions (a lazy import still ties the two modules together)."""

import ast
import pathlib
from typing import Dict, List, Set

from conftest import PROJECT_ROOT


def _modules(root: pathlib.Path) -> Dict[str, pathlib.Path]:
  """Every module of the package at `root` by dotted name (a package by its own name)."""
  modules = {}
  for path in sorted(root.rglob("*.py")):
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
      parts.pop()
    modules[".".join(parts)] = path
  return modules


def _imported(name: str, path: pathlib.Path, modules: Dict[str, pathlib.Path]) -> Set[str]:
  """The package's modules that module `name` imports anywhere in its file, with the packages
  Python runs on the way (importing a.b.c runs a and a.b): `from a.b import c` is a.b.c when c
  is a module, else a.b."""
  package = name if path.name == "__init__.py" else name.rpartition(".")[0]
  targets = set()
  for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
    if isinstance(node, ast.Import):
      targets.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
        base = ".".join(anchor + ([base] if base else []))
      for alias in node.names:
        targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
  reached = set()
  for target in targets:
    parts = target.split(".")
    reached.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
  return {module for module in reached if module in modules and module != name}


def find_cycles(root: pathlib.Path) -> List[List[str]]:
  """One cycle (a list of modules, the first repeated at the end) for each group of modules of
  the package at `root` that import each other, found by depth-first search."""
  modules = _modules(root)
  graph = {name: sorted(_imported(name, path, modules)) for name, path in modules.items()}
  cycles, done, in_cycle = [], set(), set()

  def visit(name: str, stack: List[str]) -> None:
    stack.append(name)
    for target in graph[name]:
      if target in stack and target not in in_cycle:
        cycle = stack[stack.index(target):] + [target]
        cycles.append(cycle)
        in_cycle.update(cycle)
      elif target not in done and target not in stack:
        visit(target, stack)
    stack.pop()
    done.add(name)

  for name in sorted(graph):
    if name not in done:
      visit(name, [])
  return cycles


def test_bert_tf_has_no_import_cycles():
  assert len(_modules(PROJECT_ROOT / "bert_tf")) > 40  # the walk found the package
  cycles = find_cycles(PROJECT_ROOT / "bert_tf")
  assert not cycles, "import cycles: " + "; ".join(" -> ".join(cycle) for cycle in cycles)


def test_a_cycle_through_a_function_level_import_is_found(tmp_path):
  package = tmp_path / "pkg"
  (package / "sub").mkdir(parents=True)
  (package / "__init__.py").write_text("")
  (package / "sub" / "__init__.py").write_text("")
  (package / "a.py").write_text("from pkg.sub import b\n")
  (package / "sub" / "b.py").write_text("def f():\n  from .. import a\n")
  (package / "c.py").write_text("import pkg.a\n")
  assert find_cycles(package) == [["pkg.a", "pkg.sub.b", "pkg.a"]]
