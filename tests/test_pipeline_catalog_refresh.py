"""pipeline/catalog_refresh.py's workflow, step by step, with fakes.

The rebuild, the text encoder and infra validation are stubbed; the serving
layout (version directories, models.config), the Model artifact and
run.json are real. Versions are numbered from 1 (the pusher's clock is
held at 0) so every published version is exact. Complements
tests/test_catalog_refresh_workflow.py (same stubs, the main outcomes) and
the slow end-to-end tests/test_catalog_refresh.py.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

from components import pusher
from contracts import artifacts
from contracts import model_layout
from contracts import run_record
from contracts import serving_layout
from pipeline import catalog_refresh
from trainer import refresh as refresh_lib

STEP = catalog_refresh.STEP
ITEMS = [{"item_id": " n1 ", "title": "New", "categories": "a|b",
          "year": "2024", "tags": None},
         {"item_id": "7", "title": "Old, retitled"}]
NORMALIZED = [{"item_id": "n1", "title": "New", "categories": ["a", "b"],
               "year": 2024, "tags": []},
              {"item_id": "7", "title": "Old, retitled", "categories": [],
               "year": 0, "tags": []}]
PASSED = {"passed": True, "checks": [
    {"check": "loads", "passed": True, "detail": ""},
    {"check": "signatures", "passed": True, "detail": ""}]}


def _version(serving, version, complete=True):
  d = serving_layout.version_dir(serving, "m", version)
  os.makedirs(d)
  if complete:
    with open(os.path.join(d, "saved_model.pb"), "wb") as f:
      f.write(b"v%d" % version)
  return d


def _listing(root):
  out = []
  for dirpath, _, files in os.walk(root):
    out.extend(os.path.relpath(os.path.join(dirpath, f), root)
               for f in files)
  return sorted(out)


@pytest.fixture
def fake(monkeypatch):
  """Stubs for the heavy parts; `fake` records what they were handed."""
  seen = {"infra": PASSED, "rebuild": [], "validate": [], "embed": [],
          "settings": None, "error": None}

  def rebuild(source_dir, new_items, new_item_text, export_dir, model_name,
              log=print):
    seen["rebuild"].append({"source_dir": source_dir,
                            "items": [dict(i) for i in new_items],
                            "text": new_item_text, "export_dir": export_dir,
                            "model_name": model_name})
    os.makedirs(os.path.join(export_dir, "variables"))
    with open(os.path.join(export_dir, "variables", "variables.index"),
              "wb") as f:
      f.write(b"index")
    if seen["error"] is not None:
      raise seen["error"]  # after writing half a model
    with open(os.path.join(export_dir, "saved_model.pb"), "wb") as f:
      f.write(b"rebuilt")
    os.makedirs(os.path.join(export_dir, model_layout.ASSETS_EXTRA))
    with open(model_layout.warmup_path(export_dir), "wb") as f:
      f.write(b"")
    log("rebuilt (fake)")
    return {"added": 1, "updated": 1, "catalog_items": 4}

  def validate(model_dir, budget_ms):
    seen["validate"].append((model_dir, budget_ms))
    with open(os.path.join(model_dir, "saved_model.pb"), "rb") as f:
      assert f.read() == b"rebuilt"  # the rebuilt model, not the served one
    return dict(seen["infra"])

  def embed_items(items, **kwargs):
    items = list(items)
    seen["embed"].append((items, kwargs))
    return {"item_ids": [i["item_id"] for i in items],
            "vectors": np.ones((len(items), 4), np.float32),
            "has_text": np.ones(len(items), np.int64),
            "hashes": ["h"] * len(items), "embedded": 1, "cached": 1}

  real_next = pusher.next_version
  monkeypatch.setattr(pusher, "next_version",
                      lambda root, now=None: real_next(root, now=0))
  monkeypatch.setattr(refresh_lib, "rebuild", rebuild)
  monkeypatch.setattr(catalog_refresh.refresh_state, "text_settings",
                      lambda source_dir: seen["settings"])
  monkeypatch.setattr(catalog_refresh.infra_validator, "validate", validate)
  monkeypatch.setattr(catalog_refresh.text_encoder, "embed_items",
                      embed_items)
  return seen


@pytest.fixture
def roots(tmp_path):
  return str(tmp_path / "serving"), str(tmp_path / "runs")


def _refresh(roots, messages=None, **kwargs):
  serving, runs = roots
  log = messages.append if messages is not None else (lambda m: None)
  return catalog_refresh.refresh_catalog(serving, "m", ITEMS, runs,
                                         run_id="r1", log=log, **kwargs)


def test_after_a_rollback_the_rolled_back_to_version_is_rebuilt(roots, fake):
  serving, runs = roots
  first = _version(serving, 1)
  _version(serving, 2)
  serving_layout.pin_version(serving, "m", 1)
  result = _refresh(roots)

  (call,) = fake["rebuild"]
  assert call["source_dir"] == first
  assert call["items"] == NORMALIZED
  assert call["text"] is None and call["model_name"] == "m"
  run_dir = os.path.join(runs, "r1")
  destination = serving_layout.version_dir(serving, "m", 3)
  assert result == {
      "added": 1, "updated": 1, "catalog_items": 4, "from_version": 1,
      "embedded": 0, "cached": 0, "version": 3, "destination": destination,
      "model_config": serving_layout.model_config_path(serving),
      "infra_checks": 2, "run_id": "r1", "run_dir": run_dir}
  assert serving_layout.complete_versions(
      serving_layout.model_root(serving, "m")) == [1, 2, 3]
  assert serving_layout.pinned_version(serving, "m") == 3
  assert serving_layout.served_version(serving, "m") == 3
  assert _listing(destination) == [
      "assets.extra/tf_serving_warmup_requests", "saved_model.pb",
      "variables/variables.index"]
  with open(os.path.join(first, "saved_model.pb"), "rb") as f:
    assert f.read() == b"v1"  # the source version is untouched

  record = run_record.read_run(run_dir)
  assert record["status"] == "succeeded"
  assert record["pipeline_name"] == "catalog-refresh"
  assert record["serving_root"] == serving
  assert record["parameters"] == {"model_name": "m", "from_version": 1,
                                  "new_items": 2}
  assert [(s["name"], s["status"]) for s in record["steps"]] == [
      (STEP, "succeeded")]
  model_uri = os.path.join(run_dir, STEP, "model")
  model = record["artifacts"][f"{STEP}/model"]
  assert model["uri"] == model_uri
  assert model["type"] == "Model"
  assert model["produced_by_run"] == "r1"
  assert model["inputs"] == {"served_model": {
      "uri": first, "fingerprint": artifacts.fingerprint(first)}}
  assert model["fingerprint"] == artifacts.fingerprint(model_uri)
  assert model["summary"] == {"added": 1, "updated": 1, "catalog_items": 4,
                              "from_version": 1, "embedded": 0, "cached": 0}
  assert record["pushed"]["version"] == 3
  assert "failed_step" not in record and "error" not in record
  # The artifact's own metadata names the new items.
  meta = artifacts.read_metadata(model_uri)
  assert meta["parameters"] == {"model_name": "m", "from_version": 1,
                                "items": ["n1", "7"]}


def test_the_rebuild_writes_inside_the_artifact_being_written(roots, fake):
  serving, runs = roots
  _version(serving, 1)
  _refresh(roots)
  export_dir = fake["rebuild"][0]["export_dir"]
  # A private directory beside the artifact, renamed into place after.
  assert os.path.basename(export_dir) == model_layout.SERVING_MODEL_DIR
  tmp = os.path.dirname(export_dir)
  assert os.path.dirname(tmp) == os.path.join(runs, "r1", STEP)
  assert os.path.basename(tmp).startswith(".tmp-model-")
  assert not os.path.exists(tmp)
  assert sorted(os.listdir(os.path.join(runs, "r1", STEP))) == ["model"]
  model_dir = model_layout.saved_model_dir(os.path.join(runs, "r1", STEP,
                                                        "model"))
  assert fake["validate"] == [(model_dir, 250.0)]


def test_without_a_pin_the_highest_version_is_the_source(roots, fake):
  serving, _ = roots
  _version(serving, 1)
  second = _version(serving, 2)
  _version(serving, 5, complete=False)  # a push still being copied
  result = _refresh(roots)
  assert fake["rebuild"][0]["source_dir"] == second
  assert result["from_version"] == 2
  # Above every version directory, complete or not.
  assert result["version"] == 6
  assert serving_layout.pinned_version(serving, "m") == 6


def test_a_pin_to_a_missing_version_falls_back_to_the_highest(roots, fake):
  serving, _ = roots
  _version(serving, 1)
  second = _version(serving, 2)
  serving_layout.pin_version(serving, "m", 9)
  result = _refresh(roots)
  assert fake["rebuild"][0]["source_dir"] == second
  assert (result["from_version"], result["version"]) == (2, 3)


def test_only_incomplete_versions_is_nothing_served(roots, fake):
  serving, runs = roots
  _version(serving, 1, complete=False)
  with pytest.raises(FileNotFoundError, match=re.escape(
      f"no served version under {serving_layout.model_root(serving, 'm')}")):
    _refresh(roots)
  assert not os.path.exists(runs)
  assert fake["rebuild"] == []


def test_texts_are_embedded_with_the_served_models_settings(roots, fake,
                                                            tmp_path):
  serving, runs = roots
  _version(serving, 1)
  fake["settings"] = {"model": "enc-x", "fields": ["title", "tags"],
                      "max_tags": 3, "batch_size": 16}
  messages = []
  result = _refresh(roots, messages, cache_dir=str(tmp_path / "cache"))
  ((items, kwargs),) = fake["embed"]
  assert items == NORMALIZED
  assert kwargs == {"model": "enc-x", "fields": ["title", "tags"],
                    "max_tags": 3, "batch_size": 16,
                    "cache_dir": str(tmp_path / "cache")}
  text = fake["rebuild"][0]["text"]
  assert text["item_ids"] == ["n1", "7"]
  assert text["vectors"].shape == (2, 4)
  assert (result["embedded"], result["cached"]) == (1, 1)
  assert "embedded 1 new texts (1 from the cache)" in messages
  model = run_record.read_run(os.path.join(runs, "r1"))["artifacts"][
      f"{STEP}/model"]
  assert (model["summary"]["embedded"], model["summary"]["cached"]) == (1, 1)


def test_progress_is_logged_in_order(roots, fake):
  serving, runs = roots
  _version(serving, 1)
  messages = []
  result = _refresh(roots, messages, latency_budget_ms=80.0)
  assert messages == [
      f"run r1 → {os.path.join(runs, 'r1')}: refreshing m version 1 with "
      "2 items",
      "rebuilt (fake)",
      "infra validation passed (2 checks)",
      f"published version 2 to {result['destination']} and pinned it"]
  assert fake["validate"][0][1] == 80.0


def test_a_failed_check_leaves_the_model_in_the_run_but_unpublished(roots,
                                                                   fake):
  serving, runs = roots
  _version(serving, 1)
  _version(serving, 2)
  serving_layout.pin_version(serving, "m", 1)
  fake["infra"] = {"passed": False, "checks": [
      {"check": "loads", "passed": True, "detail": ""},
      {"check": "signatures", "passed": False, "detail": "no recommend"},
      {"check": "latency:recommend", "passed": False, "detail": "p95 9 ms"}]}
  with pytest.raises(catalog_refresh.RefreshFailed) as e:
    _refresh(roots)
  message = ("infra validation: signatures: no recommend; "
             "latency:recommend: p95 9 ms")
  run_dir = os.path.join(runs, "r1")
  assert str(e.value) == f"{STEP} failed: {message} (run {run_dir})"
  assert serving_layout.complete_versions(
      serving_layout.model_root(serving, "m")) == [1, 2]
  assert serving_layout.pinned_version(serving, "m") == 1
  record = run_record.read_run(run_dir)
  assert (record["status"], record["failed_step"], record["error"]) == (
      "failed", STEP, message)
  assert record["steps"] == [{"name": STEP, "status": "failed",
                              "error": message}]
  assert record["artifacts"] == {} and "pushed" not in record
  # The rejected model stays in the run, where it can be inspected.
  assert os.path.exists(os.path.join(run_dir, STEP, "model",
                                     model_layout.SERVING_MODEL_DIR,
                                     "saved_model.pb"))


def test_any_other_rebuild_error_propagates_as_it_is_and_is_recorded(
    roots, fake):
  serving, runs = roots
  _version(serving, 1)
  serving_layout.pin_version(serving, "m", 1)
  fake["error"] = RuntimeError("graph mismatch")
  with pytest.raises(RuntimeError, match="^graph mismatch$") as e:
    _refresh(roots)
  assert not isinstance(e.value, catalog_refresh.RefreshFailed)
  run_dir = os.path.join(runs, "r1")
  record = run_record.read_run(run_dir)
  assert (record["status"], record["failed_step"], record["error"]) == (
      "failed", STEP, "RuntimeError: graph mismatch")
  assert isinstance(record["seconds"], float)
  assert record["finished_at"]
  # No partial artifact: neither the model nor its private directory.
  assert os.listdir(os.path.join(run_dir, STEP)) == []
  assert fake["validate"] == []
  assert serving_layout.complete_versions(
      serving_layout.model_root(serving, "m")) == [1]
  assert serving_layout.pinned_version(serving, "m") == 1


def test_an_os_error_in_the_rebuild_is_a_refresh_failure(roots, fake):
  serving, runs = roots
  _version(serving, 1)
  fake["error"] = OSError(28, "No space left on device")
  with pytest.raises(catalog_refresh.RefreshFailed,
                     match=r"OSError: \[Errno 28\] No space left") as e:
    _refresh(roots)
  assert isinstance(e.value.__cause__, OSError)
  assert os.listdir(os.path.join(runs, "r1", STEP)) == []


def test_an_item_without_an_id_fails_before_the_rebuild(roots, fake):
  serving, runs = roots
  _version(serving, 1)
  with pytest.raises(catalog_refresh.RefreshFailed,
                     match="ValueError: an item needs an item_id"):
    catalog_refresh.refresh_catalog(serving, "m", [{"title": "x"}], runs,
                                    run_id="r1", log=lambda m: None)
  assert fake["rebuild"] == []
  record = run_record.read_run(os.path.join(runs, "r1"))
  assert record["status"] == "failed"
  assert record["parameters"]["new_items"] == 1


def test_a_run_id_is_made_up_when_none_is_given(roots, fake):
  serving, runs = roots
  _version(serving, 1)
  result = catalog_refresh.refresh_catalog(serving, "m", ITEMS, runs,
                                           log=lambda m: None)
  assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{6}", result["run_id"])
  assert result["run_dir"] == os.path.join(runs, result["run_id"])
  assert run_record.read_run(result["run_dir"])["run_id"] == result["run_id"]


def test_a_failed_publish_is_recorded_as_a_failed_run(roots, fake,
                                                      monkeypatch):
  serving, runs = roots
  _version(serving, 1)

  def full(model_dir, serving_root, model_name):
    raise catalog_refresh.pusher.PushError(28, "No space left on device")

  monkeypatch.setattr(catalog_refresh.pusher, "push", full)
  with pytest.raises((OSError, catalog_refresh.RefreshFailed)):
    _refresh(roots)
  record = run_record.read_run(os.path.join(runs, "r1"))
  assert record["status"] == "failed"
  assert record["failed_step"] == STEP
  assert "No space left on device" in record["error"]


def test_an_item_over_a_size_limit_is_refused_with_the_limit_named(
    roots, fake):
  serving, runs = roots
  _version(serving, 1)
  items = [{"item_id": "ok", "title": "Fine"},
           {"item_id": "x" * 300, "title": "Too long an id"}]
  with pytest.raises(catalog_refresh.RefreshFailed,
                     match=r"ValueError: new items, row 2, field 'item_id': "
                           r"item_id is 300 bytes long, over "
                           r"example_gen.limits.max_id_bytes=256"):
    catalog_refresh.refresh_catalog(serving, "m", items, runs, run_id="r1",
                                    log=lambda m: None)
  assert fake["rebuild"] == []
  assert serving_layout.served_version(serving, "m") == 1
