"""The import graph: one direction between packages, no cycle anywhere.

The layer contract lives in `.importlinter` (`make test` runs lint-imports
before the suite); these tests run the same checks from pytest, build the
module graph themselves to look for cycles (function-level imports count),
and check in a fresh interpreter that the contracts layer really loads no
framework.
"""

from __future__ import annotations

import graphlib
import json
import os
import subprocess
import sys

import grimp
from importlinter import cli as importlinter_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("contracts", "components", "trainer", "serving", "pipeline")


def _graph():
  return grimp.build_graph(*PACKAGES, include_external_packages=False)


def test_the_import_contracts_are_kept(monkeypatch):
  monkeypatch.chdir(ROOT)
  assert importlinter_cli.lint_imports(
      config_filename=os.path.join(ROOT, ".importlinter"), no_cache=True,
      no_logo=True) == importlinter_cli.EXIT_STATUS_SUCCESS


def test_the_module_import_graph_has_no_cycle():
  graph = _graph()
  sorter = graphlib.TopologicalSorter()
  for module in graph.modules:
    sorter.add(module, *graph.find_modules_directly_imported_by(module))
  try:
    order = list(sorter.static_order())
  except graphlib.CycleError as e:
    raise AssertionError(f"import cycle: {' -> '.join(e.args[1])}") from None
  assert len(order) == len(graph.modules)


def test_package_edges_point_one_way():
  """Which packages import which: the layer picture, edge by edge."""
  graph = _graph()
  edges = set()
  for module in graph.modules:
    for imported in graph.find_modules_directly_imported_by(module):
      a, b = module.split(".")[0], imported.split(".")[0]
      if a != b:
        edges.add((a, b))
  allowed = {("components", "contracts"), ("serving", "contracts"),
             ("trainer", "contracts"), ("trainer", "components"),
             ("trainer", "serving"), ("pipeline", "contracts"),
             ("pipeline", "components"), ("pipeline", "trainer"),
             ("pipeline", "serving")}
  assert edges <= allowed, sorted(edges - allowed)
  # Of components, the trainer uses its TF artifact readers and metrics.
  used = {imported for module in graph.modules if module.startswith(
      "trainer") for imported in graph.find_modules_directly_imported_by(
          module) if imported.startswith("components")}
  assert used <= {"components.artifact_readers", "components.schema",
                  "components.time_features",
                  # The metric definitions (numpy only): the fusion search
                  # maximizes the metric the Evaluator reports.
                  "components.metrics"}, used


def test_the_contracts_layer_loads_no_framework():
  code = ("import json, pkgutil, sys, importlib, contracts\n"
          "for m in pkgutil.iter_modules(contracts.__path__):\n"
          "  importlib.import_module('contracts.' + m.name)\n"
          "print(json.dumps(sorted({n.split('.')[0] for n in sys.modules})))")
  proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT,
                        capture_output=True, text=True, timeout=120,
                        check=True)
  loaded = set(json.loads(proc.stdout.strip().splitlines()[-1]))
  assert not loaded & {"tensorflow", "apache_beam", "tensorflow_transform",
                       "torch", "kfp", "components", "trainer", "serving",
                       "pipeline"}, loaded
