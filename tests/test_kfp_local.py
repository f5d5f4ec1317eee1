"""The private kfp.local helpers the local runner leans on are still there.

pipeline/kfp_local.py is the one module that touches kfp's internals; this
test fails loudly, naming it, when kfp changes under it.
"""

from __future__ import annotations

from pipeline import kfp_local


def test_kfp_is_the_version_the_local_runner_was_checked_against():
  assert kfp_local.installed_version() == kfp_local.TESTED_KFP_VERSION, (
      f"kfp {kfp_local.installed_version()} is installed; pipeline/"
      f"kfp_local.py was checked against {kfp_local.TESTED_KFP_VERSION}. "
      "Re-check each private helper it uses (USED), then bump "
      "TESTED_KFP_VERSION.")


def test_every_private_helper_the_runner_uses_exists():
  missing = [f"{getattr(owner, '__name__', owner)}.{name}"
             for owner, name in kfp_local.USED
             if not callable(getattr(owner, name, None))]
  assert not missing, f"kfp.local changed; pipeline/kfp_local.py uses {missing}"


def test_only_kfp_local_imports_kfp_local():
  """No other project module reaches into kfp's internals."""
  import grimp  # pylint: disable=g-import-not-at-top
  graph = grimp.build_graph("pipeline", "contracts", "components", "trainer",
                            "serving", include_external_packages=True)
  importers = {m for m in graph.find_modules_that_directly_import("kfp")
               if graph.get_import_details(importer=m, imported="kfp")
               and any("kfp.local" in d["line_contents"] or
                       "kfp.dsl import executor" in d["line_contents"]
                       for d in graph.get_import_details(importer=m,
                                                         imported="kfp"))}
  assert importers == {"pipeline.kfp_local"}, importers
