"""The README and docs/ show only what exists: modules, scripts, files, make targets, flags, links.

A plain text scan (no TensorFlow, no imports of bert_tf): commands are read from code blocks and
inline code, a flag is checked only where it follows one of our commands (a `python -m bert_tf.X`
or `benchmarks.X` module, a run_*.py or benchmarks/*.py script, a scripts/*.sh launcher), so
gcloud's, pip's or Beam's options (after `--`) are never taken for ours.
"""

import fnmatch
import functools
import pathlib
import re
from typing import Dict, Iterator, List, Optional, Set, Tuple

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PACKAGES = ("bert_tf", "benchmarks")

FENCE = re.compile(r"^```.*?^```[ \t]*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`([^`]+)`")
# One of our commands: a module of ours run with -m, a script of ours, or a launcher.
INVOCATION = re.compile(
    r"(?:python[\d.]*|\S*/bin/python[\d.]*)\s+(?:-X\s+\S+\s+)?"
    r"(?:-m\s+(?P<module>(?:bert_tf|benchmarks)(?:\.\w+)*)|(?P<script>(?:benchmarks/\w+|run_\w+)\.py))"
    r"|(?<![\w/])(?P<launcher>scripts/[\w-]+\.sh)")
# Where a command's own arguments end: a shell operator or a bare `--` (what follows is another
# program's, e.g. Beam's pipeline options or the launcher's job command).
COMMAND_END = re.compile(r"&&|\|\||;|(?<!\S)--(?!\S)|(?<!\S)#")
FLAG = re.compile(r"(?<![\w-])--([A-Za-z][\w-]*)")
MAKE = re.compile(r"(?:^|&&|;|\(|\|)\s*make\s+([a-z][\w-]*)")
# Files of this repository the docs name (prose included).
REPO_PATH = re.compile(
    r"(?<![\w/.-])((?:bert_tf|tests|benchmarks|scripts|notebooks|configs|sample_data)/[\w/.-]*\w"
    r"|run_\w+\.py|requirements[\w-]*\.txt|setup\.py|Makefile)(?![\w*<])")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
ABSL_BUILTIN = {"help", "helpfull", "helpshort", "flagfile", "undefok"}


def _prose(text: str) -> str:
  """The page without its fenced code blocks."""
  return FENCE.sub("", text)


def commands(text: str) -> Iterator[str]:
  """Every logical line of the code blocks and every inline code span of the prose."""
  for block in FENCE.findall(text):
    body = "\n".join(block.split("\n")[1:-1])
    for line in body.replace("\\\n", " ").split("\n"):
      yield line.lstrip("!%")
  # Inline code may wrap over lines in Markdown.
  yield from (span for span in INLINE_CODE.findall(_prose(text).replace("\n", " ")))


def invocations(command: str) -> Iterator[Tuple[str, str, str]]:
  """(kind, name, its arguments) for each command of ours in one command line."""
  matches = list(INVOCATION.finditer(command))
  for i, match in enumerate(matches):
    end = matches[i + 1].start() if i + 1 < len(matches) else len(command)
    arguments = command[match.end():end]
    stop = COMMAND_END.search(arguments)
    arguments = arguments[:stop.start()] if stop else arguments
    kind = next(k for k in ("module", "script", "launcher") if match.group(k))
    name = match.group(kind)
    if kind == "module" and (command[match.end():match.end() + 2] == ".<" or
                             any(part.isupper() for part in name.split("."))):
      continue  # A placeholder: bert_tf.<tool>, benchmarks.NAME.
    yield kind, name, arguments


def all_invocations() -> List[Tuple[str, str, str, str]]:
  """(page, kind, name, arguments) over the README and docs/."""
  return [(page.name, *found) for page in PAGES
          for command in commands(page.read_text()) for found in invocations(command)]


def module_file(module: str) -> Optional[pathlib.Path]:
  """The file `python -m module` runs, if it exists."""
  path = ROOT.joinpath(*module.split("."))
  for candidate in (path.with_suffix(".py"), path / "__main__.py"):
    if candidate.is_file():
      return candidate
  return None


def _import_targets(source: pathlib.Path) -> Iterator[pathlib.Path]:
  """The files of our packages that `source` imports (at any depth in the file)."""
  text = source.read_text()
  package = source.parent
  for match in re.finditer(r"^\s*from\s+(\.+\w*(?:\.\w+)*|(?:bert_tf|benchmarks)(?:\.\w+)*)\s+"
                           r"import\s+(\([^)]*\)|[^\n]+)", text, re.MULTILINE):
    base, names = match.groups()
    if base.startswith("."):
      up = len(base) - len(base.lstrip("."))
      directory = package
      for _ in range(up - 1):
        directory = directory.parent
      parts = [p for p in base.lstrip(".").split(".") if p]
      base_path = directory.joinpath(*parts)
    else:
      base_path = ROOT.joinpath(*base.split("."))
    yield from (p for p in (base_path.with_suffix(".py"), base_path / "__init__.py") if p.is_file())
    for name in re.findall(r"\b(\w+)(?:\s+as\s+\w+)?", names.strip("()")):
      candidate = (base_path / name).with_suffix(".py")
      if candidate.is_file():
        yield candidate
  for match in re.finditer(r"^\s*import\s+((?:bert_tf|benchmarks)(?:\.\w+)*)", text, re.MULTILINE):
    path = ROOT.joinpath(*match.group(1).split("."))
    yield from (p for p in (path.with_suffix(".py"), path / "__init__.py") if p.is_file())


@functools.lru_cache(maxsize=None)
def defined_flags(entry: pathlib.Path) -> Set[str]:
  """Flags defined by `entry` and every module of ours it imports, found by text."""
  seen: Set[pathlib.Path] = set()
  todo = [entry]
  while todo:
    path = todo.pop()
    if path not in seen:
      seen.add(path)
      todo.extend(_import_targets(path))
  flags: Set[str] = set()
  for path in seen:
    text = path.read_text()
    flags.update(re.findall(r"DEFINE_\w+\s*[(,]\s*[\"'](\w+)[\"']", text))
    flags.update(re.findall(r"add_argument\(\s*(?:[\"']-\w[\"']\s*,\s*)?[\"']--([\w-]+)[\"']", text))
  return flags


def launcher_flags(script: pathlib.Path) -> Set[str]:
  """The --flags a shell launcher (and the files it sources) parses, comments left out."""
  texts = [script.read_text()]
  for sourced in re.findall(r"^source\s+.*?/([\w-]+\.sh)", texts[0], re.MULTILINE):
    texts.append((script.parent / sourced).read_text())
  code = "\n".join(re.sub(r"(?m)^\s*#.*$", "", text) for text in texts)
  return set(FLAG.findall(code))


def _ignored(path: str) -> bool:
  """An output the repository ignores (e.g. benchmarks/results_quick.json): named, not committed."""
  patterns = [line.strip() for line in (ROOT / ".gitignore").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
  return any(fnmatch.fnmatch("/" + path, pattern if pattern.startswith("/") else "*/" + pattern)
             for pattern in patterns)


def slug(heading: str) -> str:
  """GitHub's anchor for a heading."""
  text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
  text = re.sub(r"[^\w\- ]", "", text)
  return text.replace(" ", "-")


def anchors(page: pathlib.Path) -> Set[str]:
  """Every heading anchor of a Markdown page, with GitHub's -1, -2 for repeats."""
  found: Dict[str, int] = {}
  result = set()
  for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", _prose(page.read_text()), re.MULTILINE):
    base = slug(heading)
    count = found.get(base, 0)
    result.add(base if count == 0 else f"{base}-{count}")
    found[base] = count + 1
  return result


def test_pages_exist_and_readme_is_short():
  assert (ROOT / "docs" / "README.md") in PAGES and len(PAGES) > 5
  assert len((ROOT / "README.md").read_text().splitlines()) <= 260


def test_every_module_run_with_python_m_exists():
  modules = {(page, name) for page, kind, name, _ in all_invocations() if kind == "module"}
  assert any(name.startswith("bert_tf.") for _, name in modules)
  missing = sorted(f"{page}: python -m {name}" for page, name in modules if not module_file(name))
  assert not missing, "no such module (file under bert_tf/ or benchmarks/):\n" + "\n".join(missing)


def test_every_script_file_and_make_target_named_exists():
  makefile = (ROOT / "Makefile").read_text()
  targets = set(re.findall(r"^([\w.-]+)\s*:(?!=)", makefile, re.MULTILINE))
  for phony in re.findall(r"^\.PHONY:((?:.*\\\n)*.*)", makefile, re.MULTILINE):
    targets.update(phony.replace("\\\n", " ").split())
  missing = []
  for page in PAGES:
    text = page.read_text()
    for command in commands(text):
      missing += [f"{page.name}: make {target}" for target in MAKE.findall(command)
                  if target not in targets]
    missing += [f"{page.name}: {path}" for path in set(REPO_PATH.findall(text))
                if not (ROOT / path).exists() and not _ignored(path)]
  assert not missing, "named but not in the repository:\n" + "\n".join(sorted(set(missing)))


def test_every_flag_shown_with_our_commands_is_defined():
  checked, undefined = 0, []
  for page, kind, name, arguments in all_invocations():
    if kind == "launcher":
      known = launcher_flags(ROOT / name) if (ROOT / name).is_file() else set()
    else:
      entry = module_file(name) if kind == "module" else ROOT / name
      if entry is None or not entry.is_file():
        continue  # Reported by the module and script tests.
      known = defined_flags(entry)
    for flag in FLAG.findall(arguments):
      checked += 1
      bare = flag[2:] if flag.startswith("no") else None
      if flag not in known | ABSL_BUILTIN and bare not in known:
        undefined.append(f"{page}: {name} --{flag}")
  assert checked > 50
  assert not undefined, "flags no definition in bert_tf/ or the scripts has:\n" + "\n".join(
      sorted(set(undefined)))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_and_anchor_resolves(page):
  broken = []
  for target in LINK.findall(_prose(page.read_text())):
    if re.match(r"[a-z]+:", target):
      continue  # https:, mailto:
    path, _, anchor = target.partition("#")
    linked = (page.parent / path).resolve() if path else page
    if not linked.exists():
      broken.append(f"{target}: no such file")
    elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
      broken.append(f"{target}: no heading with that anchor")
  assert not broken, f"{page.name}:\n" + "\n".join(broken)


def test_the_scan_finds_commands_flags_and_anchors():
  """The scanner itself: what it takes for ours, where a command's flags end, GitHub slugs."""
  line = ("gcloud compute ssh x --worker=0 --command='cd b && .venv/bin/python run_squad.py "
          "--use_tpu=True --output_dir=gs://b' && pip install --no-deps -e .")
  assert [(k, n, FLAG.findall(a)) for k, n, a in invocations(line)] == [
      ("script", "run_squad.py", ["use_tpu", "output_dir"])]
  beam = "python -m bert_tf.corpus.clean_text --input_file=a --runner=DataflowRunner -- --project=P"
  assert [FLAG.findall(a) for _, _, a in invocations(beam)] == [["input_file", "runner"]]
  job = "scripts/tpu_job.sh --name=j -- python run_squad.py --use_tpu=True"
  assert [(n, FLAG.findall(a)) for _, n, a in invocations(job)] == [
      ("scripts/tpu_job.sh", ["name"]), ("run_squad.py", ["use_tpu"])]
  assert not list(invocations("python -m bert_tf.<tool>")) and not list(
      invocations("python -m benchmarks.NAME --help"))
  assert slug("Packing: fine-tuning without computing padding (`--pack_sequences`)") == (
      "packing-fine-tuning-without-computing-padding---pack_sequences")
  assert slug("Expected KorQuAD 1.0 fine-tuning time on a TPU") == (
      "expected-korquad-10-fine-tuning-time-on-a-tpu")
