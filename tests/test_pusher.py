"""Pusher: TF Serving layout, integer versions, nothing partial visible,
models.config pinned to the pushed version, rollbacks by re-pinning."""

import json
import os
import struct

import pytest

from contracts import artifacts
from components import evaluator
from components import pusher
from contracts import model_layout
from contracts import serving_layout
from serving import rollback as rollback_lib


def _saved_model(tmp_path):
  """A Model artifact (metadata.json) holding a stand-in SavedModel dir."""
  uri = str(tmp_path / "model")
  with artifacts.write_artifact(uri, "Model", "Trainer", "r") as w:
    d = os.path.join(w.uri, "Format-Serving")
    os.makedirs(os.path.join(d, "variables"))
    open(os.path.join(d, "saved_model.pb"), "wb").write(b"pb")
    open(os.path.join(d, "variables", "variables.index"), "wb").write(b"i")
  return uri, os.path.join(uri, "Format-Serving")


def _blessing(tmp_path, verdict):
  uri = str(tmp_path / f"blessing-{verdict}")
  with artifacts.write_artifact(uri, "ModelBlessing", "Evaluator", "r") as w:
    open(os.path.join(w.uri, verdict), "w").close()
  return uri


def test_versions_increase_and_copies_are_complete(tmp_path):
  root = str(tmp_path / "serving" / "mtrec")
  _, model = _saved_model(tmp_path)
  v1, d1 = pusher.publish_version(model, root)
  v2, d2 = pusher.publish_version(model, root)
  assert v2 > v1 and os.path.basename(d2) == str(v2)
  assert os.path.exists(os.path.join(d1, "variables", "variables.index"))
  assert sorted(os.listdir(root)) == sorted([str(v1), str(v2)])
  # A version in the future still gets a larger successor.
  os.mkdir(os.path.join(root, "99999999999"))
  assert pusher.next_version(root) == 100000000000


def test_blessed_model_is_pushed_and_unblessed_is_not(tmp_path):
  model_uri, model = _saved_model(tmp_path)
  serving = str(tmp_path / "serving")
  s = pusher.run_pusher(model_uri, model, _blessing(tmp_path, evaluator.BLESSED),
                        serving, "mtrec", str(tmp_path / "pushed1"), "r")
  assert s["pushed"] and os.path.exists(
      os.path.join(serving, "mtrec", str(s["version"]), "saved_model.pb"))
  s2 = pusher.run_pusher(model_uri, model,
                         _blessing(tmp_path, evaluator.NOT_BLESSED), serving,
                         "mtrec", str(tmp_path / "pushed2"), "r")
  assert not s2["pushed"] and "not blessed" in s2["reason"]
  assert os.listdir(os.path.join(serving, "mtrec")) == [str(s["version"])]


def test_failed_artifact_write_leaves_nothing_visible(tmp_path):
  uri = str(tmp_path / "a")
  with pytest.raises(RuntimeError):
    with artifacts.write_artifact(uri, "X", "C", "r") as w:
      open(os.path.join(w.uri, "half"), "w").close()
      raise RuntimeError("crash mid-write")
  assert os.listdir(tmp_path) == []
  with artifacts.write_artifact(uri, "X", "C", "r", {"p": 1}) as w:
    open(os.path.join(w.uri, "data"), "w").write("x")
    w.summary = {"rows": 1}
  meta = json.load(open(os.path.join(uri, "metadata.json")))
  assert meta["parameters"] == {"p": 1} and meta["summary"] == {"rows": 1}
  assert meta["fingerprint"] == artifacts.fingerprint(uri)


def _write_records(model_dir, count):
  """A warmup file of `count` TFRecord-framed records."""
  os.makedirs(os.path.join(model_dir, "assets.extra"), exist_ok=True)
  with open(os.path.join(model_dir, model_layout.WARMUP_FILE), "wb") as f:
    for i in range(count):
      data = b"record%d" % i
      f.write(struct.pack("<Q", len(data)) + b"\0" * 4 + data + b"\0" * 4)


def _version_dir(model_root, version, warmup_records=0):
  """A stand-in version: saved_model.pb and an optional warmup file."""
  d = os.path.join(model_root, str(version))
  os.makedirs(d)
  open(os.path.join(d, "saved_model.pb"), "wb").write(b"pb")
  if warmup_records:
    _write_records(d, warmup_records)
  return d


def test_push_pins_the_version_in_models_config(tmp_path):
  model_uri, model = _saved_model(tmp_path)
  _write_records(model, 3)  # As trainer/export.py writes them.
  serving = str(tmp_path / "serving")
  # Another model's entry, with a label, must survive the push.
  os.makedirs(serving)
  open(serving_layout.model_config_path(serving), "w").write(
      'model_config_list { config { name: "other" base_path: "/models/other"'
      ' model_platform: "tensorflow" version_labels { key: "stable"'
      ' value: 4 } } }')
  s = pusher.run_pusher(model_uri, model,
                        _blessing(tmp_path, evaluator.BLESSED), serving,
                        "mtrec", str(tmp_path / "pushed"), "r")
  assert s["warmup_records"] == 3
  assert s["model_config"] == serving_layout.model_config_path(serving)
  config = serving_layout.read_model_config(serving)
  other, mtrec = config.model_config_list.config
  assert (other.name, dict(other.version_labels)) == ("other", {"stable": 4})
  assert mtrec.name == "mtrec"
  assert mtrec.base_path == os.path.join(serving, "mtrec")
  assert mtrec.model_platform == "tensorflow"
  assert list(mtrec.model_version_policy.specific.versions) == [s["version"]]
  assert serving_layout.pinned_version(serving, "mtrec") == s["version"]
  # The file is a valid TF Serving config: no temporary files are left.
  assert sorted(os.listdir(serving)) == [
      ".models.config.lock", ".push-mtrec.lock", "models.config", "mtrec"]


def test_rollback_walks_back_and_forward(tmp_path):
  serving = str(tmp_path / "serving")
  root = os.path.join(serving, "mtrec")
  for version in (3, 5, 8):
    _version_dir(root, version)
  os.makedirs(os.path.join(root, "9"))  # Incomplete: no saved_model.pb.
  # Nothing pinned: the newest complete version is the one served.
  assert rollback_lib.rollback(serving, "mtrec") == (8, 5)
  assert rollback_lib.rollback(serving, "mtrec") == (5, 3)
  with pytest.raises(ValueError, match="no older version"):
    rollback_lib.rollback(serving, "mtrec")
  assert rollback_lib.rollback(serving, "mtrec", to_version=8) == (3, 8)
  with pytest.raises(ValueError, match="Version 9 of mtrec is not under"):
    rollback_lib.rollback(serving, "mtrec", to_version=9)
  assert serving_layout.pinned_version(serving, "mtrec") == 8
  with pytest.raises(ValueError, match="No versions of nope"):
    rollback_lib.rollback(serving, "nope")


def test_count_warmup_records(tmp_path):
  assert pusher.count_warmup_records(_version_dir(str(tmp_path), 1)) == 0
  assert pusher.count_warmup_records(
      _version_dir(str(tmp_path), 2, warmup_records=5)) == 5
