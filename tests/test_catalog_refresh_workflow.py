"""The catalog refresh workflow (pipeline/catalog_refresh.py) without a model.

The model rebuild, the encoder and infra validation are stubbed; the
serving layout, models.config, the artifacts and run.json are real. The
slow end-to-end refresh with a trained model is tests/test_catalog_refresh.py.
"""

from __future__ import annotations

import json
import os

import pytest

from contracts import artifacts
from contracts import run_record
from contracts import serving_layout
from pipeline import catalog_refresh
from trainer import refresh as refresh_lib

ITEM = {"item_id": "new", "title": "New", "categories": "a|b", "year": 2024,
        "tags": "x"}


def _version(serving_root, version):
  d = os.path.join(serving_root, "m", str(version))
  os.makedirs(d)
  with open(os.path.join(d, "saved_model.pb"), "wb") as f:
    f.write(b"v%d" % version)
  return d


@pytest.fixture
def stubs(monkeypatch):
  """Records what the workflow handed the rebuild; infra passes by default."""
  seen = {"infra": {"passed": True, "checks": [
      {"check": "loads", "passed": True, "detail": ""}]}}

  def rebuild(source_dir, new_items, new_item_text, export_dir, model_name,
              log=print):
    del log
    seen.update(source_dir=source_dir, items=list(new_items),
                text=new_item_text, model_name=model_name)
    if seen.get("raise"):
      os.makedirs(export_dir)  # half-written, then a failure
      raise ValueError("weights do not fit")
    os.makedirs(export_dir)
    with open(os.path.join(export_dir, "saved_model.pb"), "wb") as f:
      f.write(b"rebuilt")
    return {"added": 1, "updated": 0, "catalog_items": 3}

  monkeypatch.setattr(refresh_lib, "rebuild", rebuild)
  monkeypatch.setattr(catalog_refresh.refresh_state, "text_settings",
                      lambda source_dir: None)
  monkeypatch.setattr(catalog_refresh.infra_validator, "validate",
                      lambda model_dir, budget_ms: dict(seen["infra"]))
  return seen


def test_refresh_rebuilds_the_served_version_after_a_rollback(tmp_path,
                                                              stubs):
  serving, runs = str(tmp_path / "serving"), str(tmp_path / "runs")
  first = _version(serving, 1)
  _version(serving, 2)
  serving_layout.pin_version(serving, "m", 1)  # version 2 was rolled back
  result = catalog_refresh.refresh_catalog(serving, "m", [ITEM], runs,
                                           run_id="r1", log=lambda m: None)
  assert stubs["source_dir"] == first
  assert stubs["items"][0]["categories"] == ["a", "b"]  # normalized
  assert result["from_version"] == 1 and result["added"] == 1
  version = result["version"]
  assert version > 2
  assert serving_layout.complete_versions(
      serving_layout.model_root(serving, "m")) == [1, 2, version]
  assert serving_layout.pinned_version(serving, "m") == version
  with open(os.path.join(result["destination"], "saved_model.pb"), "rb") as f:
    assert f.read() == b"rebuilt"
  record = run_record.read_run(os.path.join(runs, "r1"))
  assert record["status"] == "succeeded"
  assert record["parameters"]["from_version"] == 1
  model = record["artifacts"]["CatalogRefresh/model"]
  assert model["inputs"]["served_model"] == {
      "uri": first, "fingerprint": artifacts.fingerprint(first)}
  assert model["type"] == "Model"


def test_a_model_that_fails_infra_validation_is_not_published(tmp_path,
                                                              stubs):
  serving, runs = str(tmp_path / "serving"), str(tmp_path / "runs")
  _version(serving, 1)
  serving_layout.pin_version(serving, "m", 1)
  stubs["infra"] = {"passed": False, "checks": [
      {"check": "loads", "passed": True, "detail": ""},
      {"check": "latency:recommend", "passed": False,
       "detail": "p95 900 ms (budget 250 ms)"}]}
  with pytest.raises(catalog_refresh.RefreshFailed,
                     match=r"latency:recommend: p95 900 ms"):
    catalog_refresh.refresh_catalog(serving, "m", [ITEM], runs, run_id="r1",
                                    log=lambda m: None)
  assert serving_layout.complete_versions(
      serving_layout.model_root(serving, "m")) == [1]
  assert serving_layout.pinned_version(serving, "m") == 1
  record = run_record.read_run(os.path.join(runs, "r1"))
  assert record["status"] == "failed"
  assert record["failed_step"] == "CatalogRefresh"
  assert "infra validation" in record["error"]


def test_a_failed_rebuild_leaves_no_artifact_and_a_failed_record(tmp_path,
                                                                 stubs):
  serving, runs = str(tmp_path / "serving"), str(tmp_path / "runs")
  _version(serving, 1)
  stubs["raise"] = True
  with pytest.raises(catalog_refresh.RefreshFailed,
                     match="ValueError: weights do not fit"):
    catalog_refresh.refresh_catalog(serving, "m", [ITEM], runs, run_id="r1",
                                    log=lambda m: None)
  step_dir = os.path.join(runs, "r1", catalog_refresh.STEP)
  assert os.listdir(step_dir) == []  # the half-written model was removed
  with open(os.path.join(runs, "r1", "run.json")) as f:
    assert json.load(f)["status"] == "failed"
  assert serving_layout.complete_versions(
      serving_layout.model_root(serving, "m")) == [1]


def test_nothing_served_is_an_error_before_any_run(tmp_path, stubs):
  with pytest.raises(FileNotFoundError, match="no served version"):
    catalog_refresh.refresh_catalog(str(tmp_path / "serving"), "m", [ITEM],
                                    str(tmp_path / "runs"))
  assert not os.path.exists(tmp_path / "runs")
  assert "source_dir" not in stubs


def test_items_files_in_csv_and_jsonl(tmp_path):
  csv_path = tmp_path / "items.csv"
  csv_path.write_text("item_id,title,categories,year,tags\n"
                      " 7 ,Film, Drama | Crime ,1999,\n")
  jsonl = tmp_path / "items.jsonl"
  jsonl.write_text('{"item_id": 8, "categories": ["A"], "tags": ["t"]}\n\n')
  assert refresh_lib.read_items_file(str(csv_path)) == [
      {"item_id": "7", "title": "Film", "categories": ["Drama", "Crime"],
       "year": 1999, "tags": []}]
  assert refresh_lib.read_items_file(str(jsonl)) == [
      {"item_id": "8", "title": "", "categories": ["A"], "year": 0,
       "tags": ["t"]}]
  with pytest.raises(ValueError, match="an item needs an item_id"):
    refresh_lib.normalize_item({"title": "no id"})
