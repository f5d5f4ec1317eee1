"""The contracts layer: the served-version rule, models.config upkeep,
artifact and run-record readers, and config sections sent as JSON."""

from __future__ import annotations

import json
import os

import pydantic
import pytest

from contracts import artifacts
from contracts import config as config_lib
from contracts import evaluation_files
from contracts import model_layout
from contracts import run_record
from contracts import serving_layout


def _version(serving_root, name, version, complete=True):
  d = os.path.join(serving_root, name, str(version))
  os.makedirs(d)
  if complete:
    with open(os.path.join(d, "saved_model.pb"), "wb") as f:
      f.write(b"m")
  return d


def test_the_served_version_is_the_pinned_one_else_the_highest(tmp_path):
  root = str(tmp_path / "serving")
  assert serving_layout.served_version(root, "m") is None
  assert serving_layout.served_model_dir(root, "m") is None
  for v in (3, 5):
    _version(root, "m", v)
  _version(root, "m", 9, complete=False)  # being written: never served
  os.makedirs(os.path.join(root, "m", ".tmp-x"))  # not a version at all
  assert serving_layout.existing_versions(os.path.join(root, "m")) == [3, 5, 9]
  assert serving_layout.complete_versions(os.path.join(root, "m")) == [3, 5]
  assert serving_layout.served_version(root, "m") == 5
  serving_layout.pin_version(root, "m", 3)  # e.g. after `mtrec rollback`
  assert serving_layout.served_version(root, "m") == 3
  assert serving_layout.served_model_dir(root, "m") == os.path.join(
      os.path.abspath(root), "m", "3")
  serving_layout.pin_version(root, "m", 9)  # pinned but incomplete
  assert serving_layout.served_version(root, "m") == 5
  serving_layout.pin_version(root, "m", 42)  # pinned but gone
  assert serving_layout.served_version(root, "m") == 5


def test_pinning_keeps_other_models_and_settings(tmp_path):
  root = str(tmp_path)
  path = serving_layout.model_config_path(root)
  with open(path, "w") as f:
    f.write('model_config_list { config { name: "other" base_path: "/x" '
            'model_platform: "tensorflow" version_labels { key: "stable" '
            'value: 7 } } }\n')
  serving_layout.pin_version(root, "m", 4)
  serving_layout.pin_version(root, "m", 6, base_path="/models/m")
  config = serving_layout.read_model_config(root)
  entries = {c.name: c for c in config.model_config_list.config}
  assert set(entries) == {"other", "m"}
  assert entries["other"].version_labels["stable"] == 7
  assert entries["m"].base_path == "/models/m"
  assert list(entries["m"].model_version_policy.specific.versions) == [6]
  assert serving_layout.pinned_version(root, "m") == 6
  assert serving_layout.pinned_version(root, "other") is None
  assert not [n for n in os.listdir(root) if ".tmp-" in n]


def test_a_broken_models_config_names_the_file(tmp_path):
  path = serving_layout.model_config_path(str(tmp_path))
  with open(path, "w") as f:
    f.write("model_config_list { nonsense: 1 }")
  with pytest.raises(serving_layout.ModelConfigError,
                     match=r"Invalid protobuf file: '.*models.config'"):
    serving_layout.read_model_config(str(tmp_path))


def test_model_layout_paths(tmp_path):
  model = model_layout.saved_model_dir(str(tmp_path / "model"))
  assert model == str(tmp_path / "model" / "Format-Serving")
  assert model_layout.warmup_path(model) == os.path.join(
      model, "assets.extra", "tf_serving_warmup_requests")
  os.makedirs(model)
  assert not model_layout.is_saved_model(model)
  open(os.path.join(model, "saved_model.pb"), "wb").close()
  assert model_layout.is_saved_model(model)


def test_split_files_skip_hidden_files(tmp_path):
  d = artifacts.split_dir(str(tmp_path), artifacts.TRAIN)
  os.makedirs(d)
  for name in ("part-1.gz", ".part-0.gz.crc", "part-0.gz"):
    open(os.path.join(d, name), "w").close()
  assert artifacts.split_files(str(tmp_path), "train") == [
      os.path.join(d, "part-0.gz"), os.path.join(d, "part-1.gz")]


def test_artifact_inputs_without_metadata_are_hashed(tmp_path):
  served = tmp_path / "serving" / "m" / "1"
  served.mkdir(parents=True)
  (served / "saved_model.pb").write_bytes(b"model")
  with artifacts.write_artifact(str(tmp_path / "out"), "Model", "P", "r",
                                inputs={"served_model": str(served)}) as w:
    w.summary = {}
  meta = artifacts.read_metadata(str(tmp_path / "out"))
  assert meta["inputs"]["served_model"]["fingerprint"] == (
      artifacts.fingerprint(str(served)))


def test_run_records_lead_to_artifacts(tmp_path):
  for run_id, uri in (("a", "/x/a/eval"), ("b", None)):
    os.makedirs(tmp_path / run_id)
    record = {"run_id": run_id, "artifacts": {}}
    if uri:
      record["artifacts"]["Evaluator/evaluation"] = {"uri": uri}
    with open(tmp_path / run_id / run_record.RUN_FILE, "w") as f:
      json.dump(record, f)
  os.makedirs(tmp_path / "c")
  (tmp_path / "c" / run_record.RUN_FILE).write_text("{half a reco")
  assert run_record.artifact_uris(str(tmp_path), "Evaluator/evaluation") == [
      "/x/a/eval"]
  assert sorted(r["run_id"] for r in run_record.iter_runs(str(tmp_path))) == [
      "a", "b"]


def test_blessing_marker_and_files(tmp_path):
  assert not evaluation_files.is_blessed(str(tmp_path))
  (tmp_path / evaluation_files.BLESSED).write_text("")
  assert evaluation_files.is_blessed(str(tmp_path))
  (tmp_path / evaluation_files.BLESSING_FILE).write_text('{"verdict": 1}')
  assert evaluation_files.read_blessing(str(tmp_path)) == {"verdict": 1}


class _Section(config_lib.StrictConfig):
  epochs: int = pydantic.Field(5, gt=0)
  name: str = "x"


def test_a_section_round_trips_and_errors_name_the_key():
  text = config_lib.encode_section(_Section(epochs=3))
  assert json.loads(text) == {"epochs": 3, "name": "x"}  # defaults included
  assert config_lib.parse_section(_Section, text, "trainer") == _Section(
      epochs=3)
  with pytest.raises(config_lib.ConfigError,
                     match=r"^parameter trainer: trainer\.epochs: Input "
                     r"should be greater than 0$"):
    config_lib.parse_section(_Section, '{"epochs": 0}', "trainer")
  with pytest.raises(config_lib.ConfigError,
                     match=r"trainer\.epochz: Extra inputs"):
    config_lib.parse_section(_Section, '{"epochz": 1}', "trainer")
  with pytest.raises(config_lib.ConfigError, match="invalid JSON"):
    config_lib.parse_section(_Section, "{", "trainer")
