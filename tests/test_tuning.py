"""Hyperparameter search (pipeline/tuning.py): the space is checked at load,
settings land where their paths say, the Katib Experiment carries the same
space and trial command, and a local search scores trials on the
validation split."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from conftest import small_config
from conftest import small_config_raw
from pipeline import cli
from pipeline import tuning
from trainer.config import TrainerConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_settings_land_where_their_paths_say():
  base = TrainerConfig().model_dump(mode="json")
  out = tuning.apply(base, {"embedding_dim": 64,
                            "text_adapter.id_dropout": 0.5,
                            "tasks.rating.weight": 0.3})
  config = TrainerConfig.model_validate(out)
  assert config.embedding_dim == 64
  assert config.text_adapter.id_dropout == 0.5
  assert {t.name: t.weight for t in config.tasks} == {
      "retrieval": 1.0, "rating": 0.3, "like": 0.1}
  assert base["embedding_dim"] == 32  # the input is left as it was
  with pytest.raises(KeyError, match="no task named 'ctr'"):
    tuning.apply(base, {"tasks.ctr.weight": 1.0})
  with pytest.raises(KeyError, match="'embeding_dim' is not a trainer"):
    tuning.apply(base, {"embeding_dim": 1})


def test_a_bad_space_names_the_parameter(tmp_path):
  path = tmp_path / "space.yaml"
  path.write_text("parameters:\n  learning_rate: {type: double, min: 0, "
                  "max: 0.1, log: true}\n")
  with pytest.raises(ValueError, match="learning_rate.*log: needs min > 0"):
    tuning.load_space(str(path))
  path.write_text("parameters:\n  hidden_unitz: {type: int, min: 1, "
                  "max: 4}\n")
  with pytest.raises(ValueError, match="parameters.hidden_unitz"):
    tuning.load_space(str(path))
  space = tuning.load_space(os.path.join(ROOT, "configs",
                                         "search_space.yaml"))
  first, again = tuning.trials(space), tuning.trials(space)
  assert first == again and len(first) == space.max_trials  # seeded
  for settings in first:
    assert settings["embedding_dim"] in (16, 32, 64)
    assert 3 <= settings["epochs"] <= 8 and isinstance(settings["epochs"],
                                                       int)
    assert 0.002 <= settings["learning_rate"] <= 0.02


def test_log_uniform_sampling_spreads_over_decades():
  p = tuning.Parameter(type="double", min=0.001, max=0.1, log=True)
  rng = np.random.default_rng(0)
  values = np.array([p.sample(rng) for _ in range(2000)])
  # Half the draws below the geometric midpoint (0.01), not 9%.
  assert np.mean(values < 0.01) == pytest.approx(0.5, abs=0.05)


def _config_with_validation(**trainer):
  raw = small_config_raw()
  return small_config(example_gen=dict(raw["example_gen"],
                                       validation_fraction=0.1),
                      trainer=dict(raw["trainer"], **trainer))


def test_the_katib_experiment_runs_the_same_space():
  config = _config_with_validation()
  space = tuning.SearchSpace.model_validate({
      "objective": "recall_at_10", "max_trials": 6, "parallel_trials": 2,
      "parameters": {
          "embedding_dim": {"type": "categorical", "values": [8, 16]},
          "learning_rate": {"type": "double", "min": 0.001, "max": 0.1,
                            "log": True},
          "tasks.rating.weight": {"type": "double", "min": 0.0,
                                  "max": 1.0}}})
  exp = tuning.katib_experiment(config, space, "/mnt/tune", "reg/mtrec:1",
                                "tune-1", "team-a")
  spec = exp["spec"]
  assert exp["kind"] == "Experiment" and exp["metadata"]["namespace"] == (
      "team-a")
  assert spec["objective"]["objectiveMetricName"] == "recall_at_10"
  assert spec["objective"]["type"] == "maximize"
  assert (spec["maxTrialCount"], spec["parallelTrialCount"]) == (6, 2)
  assert spec["metricsCollectorSpec"]["collector"]["kind"] == "StdOut"
  params = {p["name"]: p for p in spec["parameters"]}
  assert params["embeddingDim"]["feasibleSpace"] == {"list": ["8", "16"]}
  assert params["learningRate"]["feasibleSpace"] == {
      "min": "0.001", "max": "0.1", "distribution": "logUniform"}
  assert params["tasksRatingWeight"]["parameterType"] == "double"
  (container,) = spec["trialTemplate"]["trialSpec"]["spec"]["template"][
      "spec"]["containers"]
  assert container["image"] == "reg/mtrec:1"
  command = container["command"]
  assert command[:3] == ["python", "-m", "pipeline.tuning"]
  assert "--set" in command and (
      "tasks.rating.weight=${trialParameters.tasksRatingWeight}" in command)
  trainer = json.loads(command[command.index("--trainer-json") + 1])
  assert TrainerConfig.model_validate(trainer) == config.trainer
  references = {t["reference"] for t in spec["trialTemplate"][
      "trialParameters"]}
  assert references == set(params)


def test_tuning_needs_a_validation_split():
  with pytest.raises(ValueError, match="example_gen.validation_fraction"):
    tuning.katib_experiment(small_config(), tuning.SearchSpace(parameters={
        "epochs": {"type": "int", "min": 1, "max": 2}}), "/d", "i", "n",
                            "ns")


@pytest.mark.slow
def test_a_local_search_scores_trials_on_validation(tmp_path, capsys):
  """Two trials through `mtrec tune`; then one trial the way a Katib pod
  runs it, on the same artifacts, printing what Katib's collector reads."""
  import yaml  # pylint: disable=g-import-not-at-top
  raw = small_config_raw()
  raw["example_gen"] = dict(raw["example_gen"], validation_fraction=0.1)
  raw["trainer"] = dict(raw["trainer"], epochs=1)
  config_path = tmp_path / "config.yaml"
  config_path.write_text(yaml.safe_dump(raw))
  space_path = tmp_path / "space.yaml"
  space_path.write_text(yaml.safe_dump({
      "objective": "recall_at_10", "max_trials": 2, "seed": 3,
      "parameters": {"embedding_dim": {"type": "categorical",
                                       "values": [8, 16]}}}))
  out = tmp_path / "result.json"
  assert cli.main(["tune", "--config", str(config_path), "--space",
                   str(space_path), "--work-dir", str(tmp_path / "work"),
                   "--output", str(out)]) == 0
  result = json.loads(out.read_text())
  assert [t["settings"] for t in result["trials"]] == tuning.trials(
      tuning.load_space(str(space_path)))
  for t in result["trials"]:
    assert 0.0 < t["recall_at_10"] <= 1.0 and t["validation_users"] > 0
  assert result["config"]["settings"] == {"embedding_dim": 16}
  assert result["best"]["recall_at_10"] == max(
      t["recall_at_10"] for t in [result["config"], *result["trials"]])
  printed = capsys.readouterr().out
  assert "| trial | embedding_dim | recall_at_10 |" in printed
  assert "| config | 16 |" in printed

  # A Katib trial on the prepared artifacts, with the first trial's setting:
  # the same figure (the same seed and data).
  first = result["trials"][0]
  from pipeline import config as config_lib  # pylint: disable=g-import-not-at-top
  loaded = config_lib.load_config(str(config_path))
  assert tuning.trial_main([
      "--artifacts", str(tmp_path / "work"),
      "--trainer-json", json.dumps(loaded.trainer.model_dump(mode="json")),
      "--serving-json", json.dumps(loaded.serving.model_dump(mode="json")),
      "--objective", "recall_at_10",
      "--set", f"embedding_dim={first['settings']['embedding_dim']}"]) == 0
  lines = dict(line.split("=", 1) for line in capsys.readouterr().out.split(
      "\n") if line.startswith(("recall_at_10=", "retrieval_order_")))
  assert float(lines["recall_at_10"]) == pytest.approx(first["recall_at_10"],
                                                       abs=1e-6)
