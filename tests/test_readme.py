"""The README's Python example runs as written."""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_readme_python_example_runs(monkeypatch):
  text = open(os.path.join(ROOT, "README.md")).read()
  blocks = re.findall(r"```python\n(.*?)```", text, re.S)
  assert blocks, "README has no python example"
  monkeypatch.chdir(ROOT)
  for block in blocks:
    exec(compile(block, "README.md", "exec"), {})
