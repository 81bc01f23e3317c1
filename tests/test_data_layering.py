"""The import layers of igan_jax.data (docs/design.md §4), checked on the source with ast.

core is the leaf, the backends never import each other in a cycle, one dispatcher (datasets)
picks the backend, nothing imports a private name across modules, and the only late import is
TFDS (its import time is what the late import saves).
"""

import ast
import io
import tokenize
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "igan_jax" / "data"
PACKAGE = "igan_jax.data"
# The backends of the dataset kinds: only the dispatcher chooses among them.
KIND_BACKENDS = {"tfds_arrays", "tfds_images", "lsun", "folder"}


def _modules() -> dict[str, ast.Module]:
  return {p.stem: ast.parse(p.read_text(), str(p)) for p in sorted(DATA.glob("*.py"))}


def _data_imports(tree: ast.Module):
  """(module imported, names taken, at module level?) for each import of igan_jax.data."""
  top = {id(node) for node in tree.body}
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module and \
        node.module.startswith(PACKAGE):
      names = [a.name for a in node.names]
      if node.module == PACKAGE:  # from igan_jax.data import core, prepared
        for name in names:
          yield name, [], id(node) in top
      else:
        yield node.module[len(PACKAGE) + 1:], names, id(node) in top
    elif isinstance(node, ast.Import):
      for alias in node.names:
        if alias.name.startswith(PACKAGE + "."):
          yield alias.name[len(PACKAGE) + 1:], [], id(node) in top


def _graph() -> dict[str, set[str]]:
  modules = _modules()
  return {m: {dep for dep, _, _ in _data_imports(tree) if dep in modules and dep != m}
          for m, tree in modules.items()}


def test_core_is_a_leaf_and_the_graph_has_no_cycle():
  graph = _graph()
  assert graph["core"] == set()
  assert {"core", "datasets", "tfds_prepare", "prepared", "stream"} <= set(graph)
  assert "sources" not in graph and "image_datasets" not in graph
  done, active = set(), []

  def visit(m):
    assert m not in active, f"import cycle: {' -> '.join(active[active.index(m):] + [m])}"
    if m in done:
      return
    active.append(m)
    for dep in graph[m]:
      visit(dep)
    active.pop()
    done.add(m)

  for m in graph:
    visit(m)


def test_one_dispatcher_chooses_the_backend():
  graph = _graph()
  for backend in KIND_BACKENDS:
    importers = {m for m, deps in graph.items() if backend in deps}
    assert importers == {"datasets"}, (backend, importers)
  assert KIND_BACKENDS <= graph["datasets"]
  assert "datasets" in graph["stream"] and "datasets" in graph["prepare"]
  for backend in KIND_BACKENDS | {"tfds_prepare", "prepared", "fashion_mnist_offline"}:
    assert not graph[backend] & {"datasets", "stream", "prepare"}, backend


def test_no_private_names_across_modules_and_imports_at_the_top():
  for m, tree in _modules().items():
    for dep, names, at_top in _data_imports(tree):
      assert not [n for n in names if n.startswith("_")], (m, dep, names)
      assert at_top, f"{m} imports igan_jax.data.{dep} inside a function"
    late = [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
            and node not in tree.body]
    for node in late:  # only TFDS (~0.4 s to import) may be imported late
      assert isinstance(node, ast.Import) and \
          [a.name for a in node.names] == ["tensorflow_datasets"], (m, ast.dump(node))


def test_two_space_indentation_and_short_lines():
  for path in sorted(DATA.glob("*.py")):
    text = path.read_text()
    long_lines = [i for i, line in enumerate(text.splitlines(), 1) if len(line) > 100]
    assert not long_lines, (path.name, long_lines)
    depth = [0]
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
      if tok.type == tokenize.INDENT:
        assert len(tok.string) == depth[-1] + 2, (path.name, tok.start)
        depth.append(len(tok.string))
      elif tok.type == tokenize.DEDENT:
        depth.pop()
