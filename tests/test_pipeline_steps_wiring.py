"""The Evaluator and Pusher steps' wiring (pipeline/steps/{evaluator,pusher}).

Each step checks its URIs, hands the component the right paths and
settings, and turns the result into a summary for people. The Evaluator
component is stubbed (it would train nothing but evaluates with Beam and
TFMA); the Pusher component is real, on a fake SavedModel.
"""

from __future__ import annotations

import os

import pytest

from components import pusher as pusher_component
from components.config import EvaluatorConfig
from contracts import artifacts
from contracts import evaluation_files
from contracts import model_layout
from contracts import serving_layout
from pipeline import steps
from pipeline.steps import evaluator as evaluator_step
from pipeline.steps import pusher as pusher_step

CHECKS = [
    {"metric": "recall_at_20", "check": "beats popularity", "value": 0.25,
     "op": ">", "bound": 0.125, "passed": True},
    {"metric": "eval_users", "check": "non-empty eval split", "value": 40,
     "op": ">", "bound": 0, "passed": True},
    {"metric": "latency:recommend", "check": "infra validation",
     "value": "p95 900 ms", "op": "", "bound": "", "passed": False},
]
CANDIDATE = {"recall_at_10": 0.5, "ndcg_at_10": 0.25, "recall_at_20": 0.75,
             "ndcg_at_20": 0.375, "rating_rmse": 0.875, "rmse": 0.875,
             "like_auc": 0.625, "auc": 0.625, "interest_recall_at_5": 0.5,
             "liked_recall_at_20": 0.5, "graded_ndcg_at_20": 0.25}
POPULARITY = {"recall_at_10": 0.125, "ndcg_at_10": 0.0625,
              "recall_at_20": 0.1875}


@pytest.fixture
def fake_evaluator(monkeypatch):
  """Records the component call; writes an evaluation artifact's summary."""
  calls = []
  state = {"baselines": {"popularity": POPULARITY},
           "blessing": {"verdict": "NOT_BLESSED",
                        "notes": ["first model"], "checks": CHECKS}}

  def run_evaluator(*args):
    calls.append(args)
    evaluation_uri = args[5]
    with artifacts.write_artifact(evaluation_uri, "ModelEvaluation",
                                  "Evaluator", args[7]) as w:
      w.summary = {"candidate": CANDIDATE, "baselines": state["baselines"]}
    return state["blessing"]

  monkeypatch.setattr(evaluator_step.evaluator, "run_evaluator",
                      run_evaluator)
  state["calls"] = calls
  return state


def test_evaluator_hands_the_component_its_paths_and_settings(
    tmp_path, fake_evaluator, monkeypatch):
  monkeypatch.chdir(tmp_path)
  served = tmp_path / "serving" / "m" / "3"
  served.mkdir(parents=True)
  (served / "saved_model.pb").write_bytes(b"")
  uris = steps.output_uris(str(tmp_path / "run"))
  config = EvaluatorConfig(ks=[10], seed=None)
  evaluator_step.run(config, "m", "serving", ("--direct_num_workers=1",),
                     "r9", uris, pipeline_root="/runs")
  (call,) = fake_evaluator["calls"]
  assert call == (
      uris.model, os.path.join(uris.model, model_layout.SERVING_MODEL_DIR),
      uris.examples, uris.catalog, uris.transform_graph, uris.evaluation,
      uris.blessing, "r9", config, str(served), "/runs", 42,
      ["--direct_num_workers=1"], uris.anomalies)
  assert type(call[-2]) is list


def test_evaluator_without_a_served_model_has_no_baseline_and_its_seed(
    tmp_path, fake_evaluator):
  uris = steps.output_uris(str(tmp_path / "run"))
  evaluator_step.run(EvaluatorConfig(ks=[10], seed=7), "m",
                     str(tmp_path / "serving"), [], "r1", uris)
  (call,) = fake_evaluator["calls"]
  assert call[9:] == (None, None, 7, [], uris.anomalies)


def test_evaluator_summary_lists_verdict_checks_and_metrics(
    tmp_path, fake_evaluator):
  uris = steps.output_uris(str(tmp_path / "run"))
  text = evaluator_step.run(EvaluatorConfig(ks=[10, 20, 50]), "m",
                            str(tmp_path / "serving"), [], "r1", uris)
  lines = text.split("\n      ")
  report = os.path.join(uris.evaluation, evaluation_files.REPORT_HTML)
  assert lines[0] == "NOT_BLESSED (first model)"
  assert lines[1] == "ok   recall_at_20 0.2500 > 0.1250 (beats popularity)"
  assert lines[2] == "ok   eval_users 40 > 0 (non-empty eval split)"
  assert lines[3].startswith("FAIL latency:recommend p95 900 ms ")
  assert lines[3].endswith(" (infra validation)")
  # recall@50 is not in the candidate's metrics: no line for it; a missing
  # popularity metric reads nan.
  assert lines[4:] == [
      "     recall@10 0.5000 (popularity 0.1250), ndcg@10 0.2500 "
      "(popularity 0.0625)",
      "     recall@20 0.7500 (popularity 0.1875), ndcg@20 0.3750 "
      "(popularity nan)",
      f"     like_auc 0.6250, rating_rmse 0.8750; report: {report}"]


def test_evaluator_summary_shows_the_serving_baseline_when_there_is_one(
    tmp_path, fake_evaluator):
  fake_evaluator["baselines"] = {"popularity": POPULARITY,
                                 "serving": {"recall_at_10": 0.375}}
  fake_evaluator["blessing"] = {"verdict": "BLESSED", "notes": [],
                                "checks": []}
  uris = steps.output_uris(str(tmp_path / "run"))
  text = evaluator_step.run(EvaluatorConfig(ks=[10, 20]), "m",
                            str(tmp_path / "serving"), [], "r1", uris)
  lines = text.split("\n      ")
  assert lines[:3] == [
      "BLESSED",
      "     recall@10 0.5000 (popularity 0.1250, serving 0.3750), ndcg@10 "
      "0.2500 (popularity 0.0625)",
      "     recall@20 0.7500 (popularity 0.1875, serving nan), ndcg@20 "
      "0.3750 (popularity nan)"]


def test_evaluator_summary_compares_the_served_and_the_retrieval_order(
    tmp_path, fake_evaluator):
  fake_evaluator["baselines"] = {
      "popularity": POPULARITY,
      "candidate_retrieval_order": {"recall_at_20": 0.625,
                                    "liked_recall_at_20": 0.375,
                                    "graded_ndcg_at_20": 0.25}}
  uris = steps.output_uris(str(tmp_path / "run"))
  text = evaluator_step.run(EvaluatorConfig(ks=[10, 20, 50]), "m",
                            str(tmp_path / "serving"), [], "r1", uris)
  assert ("     served (fused) vs retrieval order: recall@20 0.7500 vs "
          "0.6250, liked_recall@20 0.5000 vs 0.3750, graded_ndcg@20 0.2500 "
          "vs 0.2500") in text.split("\n      ")


def test_evaluator_without_its_uris_fails_before_the_component(
    tmp_path, fake_evaluator):
  uris = steps.ArtifactUris(model="m", examples="e")
  with pytest.raises(ValueError, match=(
      r"the Evaluator step needs ArtifactUris\.catalog, "
      r"ArtifactUris\.transform_graph, ArtifactUris\.evaluation, "
      r"ArtifactUris\.blessing")):
    evaluator_step.run(EvaluatorConfig(), "m", str(tmp_path), [], "r1", uris)
  assert fake_evaluator["calls"] == []


# Pusher


def _model(uri):
  saved = model_layout.saved_model_dir(uri)
  with artifacts.write_artifact(uri, "Model", "Trainer", "r1") as w:
    os.makedirs(model_layout.saved_model_dir(w.uri))
    with open(os.path.join(w.uri, model_layout.SERVING_MODEL_DIR,
                           "saved_model.pb"), "wb") as f:
      f.write(b"model")
  return saved


def _blessing(uri, verdict):
  with artifacts.write_artifact(uri, "ModelBlessing", "Evaluator", "r1") as w:
    open(os.path.join(w.uri, verdict), "w").close()


@pytest.fixture
def clock(monkeypatch):
  """Versions numbered from 1 (not Unix seconds), so they are exact."""
  real = pusher_component.next_version
  monkeypatch.setattr(pusher_component, "next_version",
                      lambda root, now=None: real(root, now=0))


def test_pusher_publishes_a_blessed_model_and_pins_it(tmp_path, clock):
  uris = steps.output_uris(str(tmp_path / "run"))
  _model(uris.model)
  _blessing(uris.blessing, evaluation_files.BLESSED)
  serving = str(tmp_path / "serving")
  text = pusher_step.run("m", serving, "r1", uris)
  destination = serving_layout.version_dir(serving, "m", 1)
  assert text == f"pushed version 1 to {destination}"
  with open(os.path.join(destination, "saved_model.pb"), "rb") as f:
    assert f.read() == b"model"
  assert serving_layout.pinned_version(serving, "m") == 1
  summary = artifacts.read_metadata(uris.pushed_model)["summary"]
  assert summary["pushed"] is True and summary["version"] == 1
  # A second blessed push is the next version.
  uris2 = steps.output_uris(str(tmp_path / "run2"))
  _model(uris2.model)
  _blessing(uris2.blessing, evaluation_files.BLESSED)
  assert pusher_step.run("m", serving, "r2", uris2) == (
      f"pushed version 2 to {serving_layout.version_dir(serving, 'm', 2)}")
  assert serving_layout.pinned_version(serving, "m") == 2


def test_pusher_says_why_an_unblessed_model_is_not_pushed(tmp_path, clock):
  uris = steps.output_uris(str(tmp_path / "run"))
  _model(uris.model)
  _blessing(uris.blessing, evaluation_files.NOT_BLESSED)
  serving = str(tmp_path / "serving")
  text = pusher_step.run("m", serving, "r1", uris)
  assert text == ("not pushed: the model is not blessed: see "
                  f"{os.path.join(uris.blessing, 'blessing.json')}")
  assert serving_layout.existing_versions(
      serving_layout.model_root(serving, "m")) == []
  assert serving_layout.pinned_version(serving, "m") is None
  assert artifacts.read_metadata(uris.pushed_model)["summary"][
      "pushed"] is False


def test_pusher_without_its_uris_fails_before_writing(tmp_path):
  uris = steps.ArtifactUris(model=str(tmp_path / "model"))
  with pytest.raises(ValueError, match=(
      r"the Pusher step needs ArtifactUris\.blessing, "
      r"ArtifactUris\.pushed_model")):
    pusher_step.run("m", str(tmp_path / "serving"), "r1", uris)
  assert not (tmp_path / "serving").exists()
