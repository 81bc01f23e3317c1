"""The package's shape: imports go one way, modules stay small, one style.

Static checks over the source (no import of the package): the import graph of `igan_jax/` has no
cycle, no module imports another module's private (`_name`) attribute, no module is over 500
lines, and every Python file of the repository indents by 2 spaces and keeps lines within 100
characters (docs/design.md §2).
"""
import ast
import io
import os
import tokenize

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "igan_jax"
MAX_MODULE_LINES = 500
MAX_LINE = 100


def package_modules(root: str = ROOT) -> dict[str, str]:
  """Dotted module name → file path, for every .py file under igan_jax/."""
  modules = {}
  for dirpath, _, files in os.walk(os.path.join(root, PACKAGE)):
    for name in files:
      if name.endswith(".py"):
        path = os.path.join(dirpath, name)
        dotted = os.path.relpath(path, root)[:-3].replace(os.sep, ".")
        modules[dotted.removesuffix(".__init__")] = path
  return modules


def imported_names(module: str, path: str, modules: dict[str, str]):
  """(target module, imported attribute or None) for each import of the package in `path`."""
  package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
  for node in ast.walk(ast.parse(open(path).read())):
    if isinstance(node, ast.Import):
      for alias in node.names:
        if alias.name in modules:
          yield alias.name, None
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        parts = package.split(".")[:len(package.split(".")) - node.level + 1]
        base = ".".join(parts + ([base] if base else []))
      for alias in node.names:
        if f"{base}.{alias.name}" in modules:
          yield f"{base}.{alias.name}", None
        elif base in modules:
          yield base, alias.name


def import_graph(modules: dict[str, str]) -> dict[str, set[str]]:
  return {m: {t for t, _ in imported_names(m, p, modules) if t != m}
          for m, p in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """The strongly connected components of more than one module (Tarjan)."""
  index, low, stack, on_stack, found = {}, {}, [], set(), []

  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in sorted(graph[v]):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        component.append(w)
        if w == v:
          break
      if len(component) > 1:
        found.append(sorted(component))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return found


def repository_python_files() -> list[str]:
  files = []
  for top in (PACKAGE, "tests", "benchmarks", "experiments"):
    for dirpath, _, names in os.walk(os.path.join(ROOT, top)):
      files += [os.path.join(dirpath, n) for n in names if n.endswith(".py")]
  return sorted(files)


def test_cycle_finder_finds_a_cycle():
  assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
  assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle():
  modules = package_modules()
  assert len(modules) > 20
  assert cycles(import_graph(modules)) == []


def test_no_private_name_imported_across_modules():
  modules = package_modules()
  private = [(m, t, name) for m, p in modules.items()
             for t, name in imported_names(m, p, modules)
             if name is not None and name.startswith("_") and name != "__version__" and t != m]
  assert private == []


def test_no_module_over_the_size_limit():
  sizes = {m: sum(1 for _ in open(p)) for m, p in package_modules().items()}
  assert {m: n for m, n in sizes.items() if n > MAX_MODULE_LINES} == {}


@pytest.mark.parametrize("path", repository_python_files(),
                         ids=lambda p: os.path.relpath(p, ROOT))
def test_two_space_indentation_and_line_length(path):
  source = open(path, encoding="utf-8").read()
  long_lines = [i for i, line in enumerate(source.split("\n"), 1) if len(line) > MAX_LINE]
  assert long_lines == [], f"lines over {MAX_LINE} characters"
  depth, bad = [0], []
  for tok in tokenize.generate_tokens(io.StringIO(source).readline):
    if tok.type == tokenize.INDENT:
      width = len(tok.string.expandtabs(8))
      if width - depth[-1] != 2:
        bad.append(tok.start[0])
      depth.append(width)
    elif tok.type == tokenize.DEDENT:
      depth.pop()
  assert bad == [], "blocks not indented by 2 spaces"
