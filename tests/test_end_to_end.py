"""The whole chain on synthetic data, then real gRPC against the pushed model."""

import json
import os
import subprocess
import sys

import grpc
import numpy as np
import pytest

from contracts import artifacts
from conftest import small_config
from pipeline import runner
from serving import client as client_lib
from serving import model_server

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_run_records_lineage_and_counts(small_run):
  with open(os.path.join(small_run.run_dir, runner.RUN_FILE)) as f:
    run = json.load(f)
  assert run["status"] == "succeeded"
  assert [s["name"] for s in run["steps"]] == [
      "ExampleGen", "StatisticsGen", "ExampleValidator", "Transform",
      "Trainer", "Evaluator", "Pusher"]
  assert all(s["status"] == "succeeded" and s["seconds"] >= 0
             for s in run["steps"])
  assert set(run["artifacts"]) == set(small_run.uris)
  counts = run["artifacts"]["ExampleGen/examples"]["summary"]
  assert counts["interactions_in"] == 8000 == (
      counts["interactions_train"] + counts["interactions_eval"] +
      counts["interactions_quarantined"] + counts["duplicates_dropped"])
  # Lineage: the model names the fingerprints of what it was trained on.
  model_inputs = run["artifacts"]["Trainer/model"]["inputs"]
  assert model_inputs["transform_graph"]["fingerprint"] == run["artifacts"][
      "Transform/transform_graph"]["fingerprint"]
  metrics = artifacts.read_metadata(small_run.artifacts.evaluation)
  for key in ("recall_at_10", "ndcg_at_20", "rmse", "auc"):
    assert 0.0 <= metrics["summary"]["candidate"][key] <= 5.0
  assert "recall_at_20" in metrics["summary"]["baselines"]["popularity"]


def small_run_history(small_run, user):
  """The user's latest history, as the exported model holds it."""
  from trainer import refresh_state  # pylint: disable=g-import-not-at-top
  state = refresh_state.load_state(small_run.pushed["destination"])
  return state["histories"].get(user, [])


def subprocess_explain(port, user, item):
  """`mtrec explain` in its own process: what a user types."""
  done = subprocess.run(
      [os.path.join(os.path.dirname(sys.executable), "mtrec"), "explain",
       "--user", user, "--item", item, "--server", f"127.0.0.1:{port}"],
      capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stderr[-2000:]
  return done.stdout


@pytest.mark.slow
def test_pushed_model_answers_over_grpc(small_run):
  pushed = small_run.pushed
  assert pushed["pushed"]
  base_path = os.path.dirname(pushed["destination"])
  with model_server.ModelServer("mtrec", base_path, port=0,
                                host="127.0.0.1") as server:
    assert server.version == pushed["version"]
    with client_lib.PredictionClient(f"localhost:{server.port}") as c:
      rows = client_lib.recommend(c, "mtrec", "u1")
      assert [row["rank"] for row in rows] == [1, 2, 3, 4, 5]
      assert all(row["item_id"].startswith("i") and row["title"]
                 for row in rows)
      assert {"rating", "p_like"} <= set(rows[0])
      # A user the model has never seen still gets recommendations.
      assert len(client_lib.recommend(c, "mtrec", "brand-new-user")) == 5
      scores = c.predict("mtrec", {"user_id": ["u1", "u1"],
                                   "item_id": [rows[0]["item_id"], "nope"]})
      assert scores["affinity"][0] == pytest.approx(
          rows[0]["retrieval_scores"], rel=1e-4, abs=1e-4)
      # The fused score is the sum of the tasks' contributions.
      for row in rows:
        assert row["score"] == pytest.approx(sum(
            v for k, v in row.items() if k.startswith("contribution_")),
                                             rel=1e-4, abs=1e-4)
      # Per-request fusion weights are checked in the graph: TF Serving's
      # INVALID_ARGUMENT, naming the input.
      for weights in ([[1.0, 0.5]], [[1.0, -1.0, 0.0]],
                      [[1.0, float("nan"), 0.0]]):
        with pytest.raises(grpc.RpcError) as e:
          c.predict("mtrec", {
              "user_id": ["u1"], "exclude_item_ids": [[""]],
              "k": np.array(3, np.int32),
              "fusion_weights": np.array(weights, np.float32)},
                    signature_name="recommend_weighted")
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "fusion_weights" in e.value.details()
      # A client reads the fused tasks and tunes their weights per call.
      weights = client_lib.fusion_weights(c, "mtrec")
      assert list(weights) == ["retrieval", "rating", "like"]
      assert weights["retrieval"] == 1.0
      by_like = client_lib.recommend(
          c, "mtrec", "u1", weights={"retrieval": 0.0, "rating": 0.0,
                                     "like": 1.0}, k=4)
      assert len(by_like) == 4
      p_like = [row["p_like"] for row in by_like]
      assert p_like == sorted(p_like, reverse=True)
      with pytest.raises(ValueError, match="no task named 'ctr'"):
        client_lib.recommend(c, "mtrec", "u1", weights={"ctr": 1.0})
      with pytest.raises(grpc.RpcError) as e:
        c.predict("mtrec", {"user_id": ["u1"]}, signature_name="nope")
      assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
      # Why the first item: the same score, its terms, the model's view.
      answer = client_lib.explain(c, "mtrec", "u1", rows[0]["item_id"])
      assert answer["score"] == pytest.approx(rows[0]["score"], rel=1e-5,
                                              abs=1e-6)
      assert answer["rank"] == 1
      assert answer["user_known"] is True and answer["item_known"] is True
      assert set(answer["history_item_ids"]) <= set(
          small_run_history(small_run, "u1"))
    out = subprocess_explain(server.port, "u1", rows[0]["item_id"])
    assert f"Item {rows[0]['item_id']} for user u1: score" in out
    assert "(rank 1 among the user's candidates)" in out
    assert "  user: known" in out and "  item: trained on" in out


@pytest.mark.slow
def test_a_click_and_watch_time_model_is_evaluated_blessed_and_fused(
    tmp_path):
  config = small_config(
      trainer={"epochs": 2, "batch_size": 256, "embedding_dim": 16,
               "tasks": [
                   {"name": "retrieval", "kind": "retrieval"},
                   {"name": "click", "kind": "binary", "label": "click",
                    "weight": 0.1},
                   {"name": "watch_fraction", "kind": "regression",
                    "label": "watch_fraction", "weight": 0.1}]},
      evaluator={"ks": [10, 20], "must_beat_popularity": [],
                 "thresholds": {"click_auc": {"min": 0.55},
                                "watch_fraction_rmse": {"max": 0.5}}})
  result = runner.run_pipeline(config, output_dir=str(tmp_path / "runs"),
                               serving_root=str(tmp_path / "serving"),
                               log=lambda m: None)
  assert result.pushed["pushed"]
  with open(os.path.join(result.artifacts.blessing, "blessing.json")) as f:
    blessing = json.load(f)
  assert blessing["verdict"] == "BLESSED"
  judged = {c["metric"] for c in blessing["checks"]}
  assert {"click_auc", "watch_fraction_rmse"} <= judged
  with open(os.path.join(result.artifacts.evaluation, "metrics.json")) as f:
    overall = json.load(f)["overall"]
  candidate = overall["candidate"]
  assert 0.55 <= candidate["click_auc"] <= 1.0
  assert 0.0 < candidate["watch_fraction_rmse"] <= 0.5
  assert 0.0 < candidate["click_log_loss"] < 1.0
  # The fused order and the same model's retrieval order, on the same users.
  assert "recall_at_20" in overall["candidate_retrieval_order"]
  assert overall["candidate"]["users"] == overall[
      "candidate_retrieval_order"]["users"]
  card_path = os.path.join(result.artifacts.model, "Format-Serving",
                           "assets.extra", "mtrec_model.json")
  with open(card_path) as f:
    assert json.load(f)["ranking"]["fusion_tasks"] == [
        "retrieval", "click", "watch_fraction"]


@pytest.mark.slow
def test_unblessed_model_is_not_pushed(small_run):
  # The shared run's pipeline again, into its own serving root, with a bar
  # its model cannot meet: the data and training steps are reused from the
  # cache, the Evaluator judges anew and the Pusher publishes nothing.
  with open(os.path.join(small_run.run_dir, runner.RUN_FILE)) as f:
    serving_root = json.load(f)["serving_root"]
  model_root = os.path.join(serving_root, "mtrec")
  served = sorted(os.listdir(model_root))
  config = small_config(
      evaluator={"ks": [10, 20], "must_beat_popularity": [],
                 "thresholds": {"recall_at_20": {"min": 0.99}}})
  result = runner.run_pipeline(config, os.path.dirname(small_run.run_dir),
                               serving_root, log=lambda m: None)
  assert [(s["name"], s["status"]) for s in result.steps][-3:] == [
      ("Trainer", "cached"), ("Evaluator", "succeeded"),
      ("Pusher", "succeeded")]
  blessing = artifacts.read_metadata(result.artifacts.blessing)
  assert blessing["summary"] == {"verdict": "NOT_BLESSED",
                                 "failed": ["recall_at_20"]}
  assert not result.pushed["pushed"]
  assert sorted(os.listdir(model_root)) == served


def test_cli_reports_config_errors_and_failed_steps(tmp_path):
  bad = tmp_path / "bad.yaml"
  bad.write_text("data: {format: synthetic, options: {num_interactions: 10}}\n"
                 "trainer: {epochs: zero}\n")
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
  out = subprocess.run([sys.executable, "-m", "pipeline.cli", "run",
                        "--config", str(bad)], capture_output=True, text=True,
                       env=env, cwd=REPO, timeout=120)
  assert out.returncode == 2
  assert f"{bad}: trainer.epochs: Input should be a valid integer" in (
      out.stderr)

  (tmp_path / "r.csv").write_text("u,i,t\n,1,5\n2,,6\n")
  cfg = tmp_path / "allbad.yaml"
  cfg.write_text(
      "data:\n  format: tabular\n  options:\n    interactions:\n"
      "      path: r.csv\n      columns: {user_id: u, item_id: i, "
      "timestamp: t}\n")
  out = subprocess.run([sys.executable, "-m", "pipeline.cli", "run",
                        "--config", str(cfg), "--output-dir",
                        str(tmp_path / "runs")], capture_output=True,
                       text=True, env=env, cwd=REPO, timeout=300)
  assert out.returncode == 1
  last = out.stderr.strip().splitlines()[-1]
  assert last.startswith("mtrec run: step ExampleGen failed: ExampleGenError: "
                         "ExampleGen: no usable interactions: 2 rows read, "
                         "2 quarantined"), last
  run_json = json.loads(next((tmp_path / "runs").glob("*/run.json")).read_text())
  assert run_json["status"] == "failed"
  assert run_json["failed_step"] == "ExampleGen"
