"""Pusher: TF Serving layout, integer versions, nothing partial visible."""

import json
import os

import pytest

from components import artifacts
from components import evaluator
from components import pusher


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
