"""Distillation: soft-target losses on hand-computed cases, the config, and
training against a teacher (the small run's exported model)."""

import math

import numpy as np
import pytest

import trainer  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

from trainer import distillation
from trainer.config import TrainerConfig


def _kl(p, q):
  return float(sum(a * math.log(a / b) for a, b in zip(p, q) if a > 0))


def _softmax(x):
  e = np.exp(np.asarray(x, np.float64) - max(x))
  return list(e / e.sum())


def test_retrieval_kl_hand_computed():
  """Teacher logits [1, 0] against a student's [0, 0], at T = 1 and 2; a
  masked candidate and a row that is no query change nothing."""
  tq = tf.constant([[1.0, 0.0], [5.0, 5.0]])
  tc = tf.constant([[1.0, 0.0], [0.0, 1.0], [9.0, 9.0]])
  sq = tf.constant([[0.0, 0.0], [1.0, 1.0]])
  sc = tf.constant([[1.0, 0.0], [0.0, 1.0], [-9.0, 9.0]])
  weight = tf.constant([1.0, 0.0])  # row 2 is no query
  mask = tf.constant([True, True, False])  # candidate 3 is no candidate
  for t in (1.0, 2.0):
    got = float(distillation.retrieval_kl(tq, tc, sq, sc, weight, mask,
                                          None, t))
    expected = t ** 2 * _kl(_softmax([1 / t, 0.0]), [0.5, 0.5])
    assert got == pytest.approx(expected, rel=1e-5)
  assert float(distillation.retrieval_kl(tq, tc, sq, sc, weight, mask, None,
                                         1.0)) == pytest.approx(0.1109441,
                                                                rel=1e-5)
  # logQ correction applies to both: teacher [1, 0] - log q, student -log q.
  log_q = tf.math.log(tf.constant([0.5, 0.25, 0.25]))
  got = float(distillation.retrieval_kl(tq, tc, sq, sc, weight, mask, log_q,
                                        1.0))
  p = _softmax([1 - math.log(0.5), -math.log(0.25)])
  q = _softmax([-math.log(0.5), -math.log(0.25)])
  assert got == pytest.approx(_kl(p, q), rel=1e-5)


def test_bernoulli_kl_is_zero_on_agreement_and_matches_by_hand():
  same = distillation._bernoulli_kl(tf.constant([2.0, -1.0]),
                                    tf.constant([2.0, -1.0]), 2.0)
  np.testing.assert_allclose(same.numpy(), [0.0, 0.0], atol=1e-6)
  # Teacher p = sigmoid(0) = 0.5, student q = sigmoid(2 / 2).
  q = 1 / (1 + math.exp(-1.0))
  expected = 0.5 * math.log(0.5 / q) + 0.5 * math.log(0.5 / (1 - q))
  got = float(distillation._bernoulli_kl(tf.constant([0.0]),
                                         tf.constant([2.0]), 2.0)[0])
  assert got == pytest.approx(expected, rel=1e-5)


def test_distillation_config_is_validated_at_load():
  ok = TrainerConfig.model_validate({"distillation": {
      "teacher": {"embedding_dim": 64, "shared_layers": {"num_experts": 8}},
      "weights": {"rating": 0.5}}})
  teacher = ok.teacher_config()
  assert (teacher.embedding_dim, teacher.shared_layers.num_experts,
          teacher.shared_layers.kind) == (64, 8, "mmoe")
  assert teacher.distillation is None and ok.trains_teacher()
  # Unlisted tasks weigh as much as their hard loss.
  assert [ok.distillation_weight(t) for t in ok.tasks] == [1.0, 0.5, 0.1]
  bad = {
      "'ratng' is not a task": {"weights": {"ratng": 1.0}},
      "embedding_dimm": {"teacher": {"embedding_dimm": 64}},
      "no regression task 'rating'": {"teacher": {"tasks": [
          {"name": "retrieval", "kind": "retrieval"}]}},
      "either teacher overrides or teacher_model": {
          "teacher": {"epochs": 9}, "teacher_model": "/m"},
      "temperature": {"temperature": 0},
      "catalog_items_per_row: it needs retrieval_candidates: catalog": {
          "catalog_items_per_row": 8},
  }
  for message, section in bad.items():
    with pytest.raises(ValueError, match=message):
      TrainerConfig.model_validate({"distillation": section})
  served = TrainerConfig.model_validate(
      {"distillation": {"teacher_model": "/serving/mtrec/3"}})
  assert not served.trains_teacher()
  # The student's own epochs; the teacher and the plain student keep the
  # section's.
  longer = TrainerConfig.model_validate(
      {"epochs": 5, "distillation": {"epochs": 8}})
  assert (longer.fit_epochs(), served.fit_epochs()) == (8, 5)
  assert longer.without_distillation().fit_epochs() == 5
  assert longer.teacher_config().fit_epochs() == 5
  with pytest.raises(ValueError, match="epochs"):
    TrainerConfig.model_validate({"distillation": {"epochs": 0}})


def _fit(small_run, config, tmp_path, name, teacher_dir=None):
  from trainer import run  # pylint: disable=g-import-not-at-top
  u = small_run.artifacts
  return run.fit(u.transform_graph, u.transformed_examples, u.examples,
                 config, str(tmp_path / name), tf.distribute.get_strategy(),
                 log=lambda m: None, teacher_dir=teacher_dir)


@pytest.mark.slow
def test_a_student_learns_its_teachers_predictions(small_run, tmp_path):
  """The small run's exported model (what the pipeline would serve) teaches
  a fresh student of the same section: with weight 0 training is exactly
  plain training; with weights, the student ends closer to the teacher on
  every task than the same student trained on labels alone."""
  from contracts import model_layout  # pylint: disable=g-import-not-at-top
  from trainer import refresh_state  # pylint: disable=g-import-not-at-top
  teacher_dir = model_layout.saved_model_dir(small_run.artifacts.model)
  raw = refresh_state.trainer_section(teacher_dir)
  raw.update(epochs=1, distillation=None)
  plain_config = TrainerConfig.model_validate(raw)
  zero = TrainerConfig.model_validate(dict(raw, distillation={
      "teacher_model": teacher_dir,
      "weights": {t.name: 0.0 for t in plain_config.tasks}}))
  strong = TrainerConfig.model_validate(dict(raw, distillation={
      "teacher_model": teacher_dir, "temperature": 1.0,
      "weights": {t.name: 5.0 for t in plain_config.tasks}}))

  plain = _fit(small_run, plain_config, tmp_path, "plain")
  zeroed = _fit(small_run, zero, tmp_path, "zero", teacher_dir)
  for key, values in plain["history"].items():
    assert zeroed["history"][key] == pytest.approx(values, rel=1e-5), key
  distilled = _fit(small_run, strong, tmp_path, "distilled", teacher_dir)
  assert {f"{t.name}_distillation_loss" for t in plain_config.tasks} <= set(
      distilled["history"])

  # How far each student is from the teacher, measured with the soft-target
  # losses themselves on eval batches.
  from trainer import data  # pylint: disable=g-import-not-at-top
  from trainer import run  # pylint: disable=g-import-not-at-top
  u = small_run.artifacts
  spec = distilled["tft_output"].transformed_feature_spec()
  batches = list(data.make_dataset(u.transformed_examples, "eval", spec, 512,
                                   shuffle=False).take(4))
  soft = distilled["model"].distillation

  def distance(model):
    totals = {}
    for batch in batches:
      for name, loss in soft(batch, model(batch)).items():
        totals[name] = totals.get(name, 0.0) + float(loss)
    return totals

  far, near = distance(plain["model"]), distance(distilled["model"])
  assert set(far) == {t.name for t in plain_config.tasks}
  for name in far:
    assert near[name] < far[name], (name, near, far)
  del run


@pytest.mark.slow
def test_teacher_and_trainer_steps_and_the_report_of_three_models(
    small_run, tmp_path):
  """The Teacher step trains the teacher section on the run's artifacts
  (two members, each a complete export); the Trainer step distills from
  their mean, records it as an input and exports the undistilled twin
  beside the model (same variables: the same serving cost); the Evaluator
  measures all three and the report says which is which. (The DAG
  wiring: test_the_compiled_pipeline_has_a_teacher_...)"""
  import dataclasses  # pylint: disable=g-import-not-at-top
  import json  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top
  from components.config import EvaluatorConfig  # pylint: disable=g-import-not-at-top
  from contracts import artifacts  # pylint: disable=g-import-not-at-top
  from contracts import model_layout  # pylint: disable=g-import-not-at-top
  from pipeline.steps import evaluator as evaluator_step  # pylint: disable=g-import-not-at-top
  from pipeline.steps import teacher as teacher_step  # pylint: disable=g-import-not-at-top
  from pipeline.steps import trainer as trainer_step  # pylint: disable=g-import-not-at-top
  from trainer.config import ServingConfig  # pylint: disable=g-import-not-at-top

  # A teacher of two members; the soft targets over the catalog too.
  config = TrainerConfig.model_validate({
      "epochs": 1, "batch_size": 256, "embedding_dim": 8,
      "distillation": {"teacher": {"embedding_dim": 16, "members": 2},
                       "retrieval_candidates": "catalog",
                       "catalog_items_per_row": 4, "epochs": 2}})
  serving = ServingConfig.model_validate(
      {"top_k": 5, "ranking": {"search": {"enabled": False}}})
  uris = dataclasses.replace(
      small_run.artifacts, teacher_model=str(tmp_path / "teacher"),
      model=str(tmp_path / "model"), evaluation=str(tmp_path / "evaluation"),
      blessing=str(tmp_path / "blessing"))
  teacher_step.run(config.teacher_config(), serving, "mtrec", "r1", uris,
                   with_item_text=False, log=lambda m: None)
  trainer_step.run(config, serving, "mtrec", "r1", uris,
                   with_item_text=False, log=lambda m: None)

  model_meta = artifacts.read_metadata(uris.model)
  assert model_meta["inputs"]["teacher_model"]["uri"] == (
      model_layout.saved_model_dir(uris.teacher_model))
  teacher_meta = artifacts.read_metadata(uris.teacher_model)
  assert teacher_meta["parameters"]["embedding_dim"] == 16
  assert teacher_meta["summary"]["members"] == 2
  from trainer import refresh_state  # pylint: disable=g-import-not-at-top
  members = model_layout.member_dirs(
      model_layout.saved_model_dir(uris.teacher_model))
  assert [refresh_state.trainer_section(d)["seed"] for d in members] == [
      config.seed, config.seed + 1]
  assert model_meta["summary"]["distillation"]["undistilled"]
  # The student trains distillation.epochs; the plain one and the teacher
  # the section's.
  assert model_meta["summary"]["epochs"] == 2
  assert model_meta["summary"]["distillation"]["undistilled_epochs"] == 1
  assert teacher_meta["summary"]["epochs"] == 1
  assert set(model_meta["summary"]["distillation"]["final_losses"]) == {
      "retrieval", "rating", "like"}
  shapes = [tf.train.load_checkpoint(os.path.join(
      d, "variables", "variables")).get_variable_to_shape_map()
            for d in (model_layout.saved_model_dir(uris.model),
                      model_layout.undistilled_model_dir(uris.model))]
  assert shapes[0] == shapes[1]

  evaluator_step.run(
      EvaluatorConfig.model_validate({"ks": [10, 20], "explained_users": 0,
                                      "must_beat_popularity": []}),
      "mtrec", str(tmp_path / "serving"), [], "r1", uris)
  with open(os.path.join(uris.evaluation, "metrics.json")) as f:
    metrics = json.load(f)
  for name in ("candidate", "teacher", "undistilled_student"):
    assert {"recall_at_20", "rmse"} <= set(metrics["overall"][name]), name
  # Same architecture, different training: different metrics.
  assert metrics["overall"]["candidate"] != metrics["overall"][
      "undistilled_student"]
  with open(os.path.join(uris.evaluation, "report.html")) as f:
    assert 'id="distillation"' in f.read()
  assert any(n.startswith("teacher: the mean of 2 models")
             for n in metrics["notes"])


def test_the_compiled_pipeline_has_a_teacher_only_when_one_is_trained():
  """The Teacher task feeds the Trainer's optional teacher_model input and
  reads only its own section; an existing teacher_model needs no step."""
  import json  # pylint: disable=g-import-not-at-top
  from conftest import small_config  # pylint: disable=g-import-not-at-top
  from pipeline import kfp_pipeline  # pylint: disable=g-import-not-at-top

  def dag(distillation):
    trainer_section = {"epochs": 1, "distillation": distillation}
    spec = kfp_pipeline.pipeline_spec(small_config(trainer=trainer_section))
    return spec, spec["root"]["dag"]["tasks"]

  spec, tasks = dag({"teacher": {"embedding_dim": 64}})
  assert tasks["trainer"]["inputs"]["artifacts"]["teacher_model"][
      "taskOutputArtifact"] == {"producerTask": "teacher",
                                "outputArtifactKey": "teacher_model"}
  teacher_params = tasks["teacher"]["inputs"]["parameters"]
  assert "trainer_config" not in teacher_params
  assert teacher_params["teacher_config"]["componentInputParameter"] == (
      "teacher_config")
  default = spec["root"]["inputDefinitions"]["parameters"]["teacher_config"][
      "defaultValue"]
  assert json.loads(default)["embedding_dim"] == 64
  assert json.loads(default)["epochs"] == 1
  assert "distillation" not in json.loads(default) or json.loads(
      default)["distillation"] is None

  _, tasks = dag({"teacher_model": "/serving/mtrec/3"})
  assert "teacher" not in tasks
  assert "teacher_model" not in tasks["trainer"]["inputs"].get(
      "artifacts", {})
  _, tasks = dag(None)
  assert "teacher" not in tasks


def test_the_benchmark_verdict_measures_the_recovered_gap():
  """Half the teacher-student gap on Recall@20 and RMSE, nothing worse."""
  from benchmarks import distillation as bench  # pylint: disable=g-import-not-at-top
  from benchmarks.suite import report  # pylint: disable=g-import-not-at-top

  def row(recall, ndcg, rmse, auc):
    return {"recall_at_20": (recall, 0.001), "ndcg_at_20": (ndcg, 0.001),
            "rmse": (rmse, 0.002), "auc": (auc, 0.003),
            "latency_ms": (1.0, 0.1), "train_seconds": (60.0, 1.0)}

  summary = {"teacher": row(0.160, 0.17, 0.860, 0.79),
             "student": row(0.140, 0.15, 0.900, 0.77),
             "distilled student": row(0.151, 0.15, 0.880, 0.78)}
  text = bench.verdict(summary)
  assert "recall_at_20: distilled 0.1510 vs student 0.1400 (not worse)" in (
      text)
  assert "55% of the gap recovered" in text  # (0.151 - 0.14) / 0.02
  assert "rmse: distilled 0.8800 vs student 0.9000 (not worse), teacher " \
         "0.8600: 50% of the gap recovered" in text
  assert ("recommend p50: distilled 1.00 ms vs student 1.00 ms (1.00x, "
          "equal within 10%") in text
  assert text.endswith("DONE-WHEN HOLDS")
  slower = dict(summary["distilled student"], latency_ms=(1.2, 0.1))
  assert bench.verdict(dict(summary, **{"distilled student": slower})
                       ).endswith("DONE-WHEN FAILS")
  summary["distilled student"] = row(0.151, 0.149, 0.880, 0.78)  # NDCG worse
  assert bench.verdict(summary).endswith("DONE-WHEN FAILS")
  summary["distilled student"] = row(0.149, 0.15, 0.880, 0.78)  # 45%
  assert bench.verdict(summary).endswith("DONE-WHEN FAILS")

  lines = report._distillation({  # pylint: disable=protected-access
      "config": "configs/x.yaml", "seeds": [1, 2, 3],
      "teacher": {"embedding_dim": 128}, "temperature": 2.0, "weights": {},
      "summary": summary, "verdict": "DONE-WHEN FAILS"})
  assert lines[0] == "## Distillation"
  assert ("| distilled student | 0.1490 ± 0.0010 | 0.1500 ± 0.0010 | "
          "0.8800 ± 0.0020 | 0.7800 ± 0.0030 | 1.0000 ± 0.1000 |") in lines

  # A teacher of three members: said so, measured as their mean, untimed.
  untimed = {k: v for k, v in summary["teacher"].items() if k != "latency_ms"}
  lines = report._distillation({  # pylint: disable=protected-access
      "config": "configs/x.yaml", "seeds": [1, 2, 3],
      "teacher": {"members": 3}, "temperature": 1.0, "weights": {},
      "retrieval_candidates": "catalog", "student_epochs": 8,
      "summary": dict(summary, teacher=untimed, **{
          "student, same epochs": row(0.139, 0.14, 0.910, 0.76)}),
      "verdict": ""})
  assert "the retrieval soft target over the whole catalog of trained " \
         "items" in lines[2]
  assert any(line.startswith("The teacher is the mean of 3 models")
             for line in lines)
  assert "8 epochs (`distillation.epochs`)" in lines[2]
  assert any(line.startswith('"student, same epochs" is the student trained')
             for line in lines)
  assert ("| student, same epochs | 0.1390 ± 0.0010 | 0.1400 ± 0.0010 | "
          "0.9100 ± 0.0020 | 0.7600 ± 0.0030 | 1.0000 ± 0.1000 |") in lines
  assert ("| teacher | 0.1600 ± 0.0010 | 0.1700 ± 0.0010 | 0.8600 ± 0.0020 "
          "| 0.7900 ± 0.0030 | — |") in lines


def test_the_benchmarks_ensemble_teacher_ranks_by_the_members_mean(
    monkeypatch):
  """benchmarks/distillation.EnsembleRetrieval: the catalog ranked by the
  mean of the members' query · item scores, seen items excluded."""
  import types  # pylint: disable=g-import-not-at-top
  from benchmarks import distillation as bench  # pylint: disable=g-import-not-at-top

  asked_at = []

  def member(user, items):
    def table(rows, name):
      return lambda **k: {"embedding": tf.constant(
          [rows[x.decode()] for x in k[name].numpy()])}

    def user_at(user_id, timestamp):
      asked_at.extend(timestamp.numpy().tolist())
      return table({"u": user}, "user_id")(user_id=user_id)
    return types.SimpleNamespace(signatures={
        "embed_user_at": user_at, "embed_item": table(items, "item_id")})

  # Member 1 alone ranks a first, member 2 b; their mean: b 2.5, c 2, a 1.5.
  exports = {"m1": member([1.0, 0.0], {"a": [3.0, 0.0], "b": [1.0, 0.0],
                                       "c": [2.0, 0.0]}),
             "m2": member([0.0, 1.0], {"a": [0.0, 0.0], "b": [0.0, 4.0],
                                       "c": [0.0, 2.0]})}
  monkeypatch.setattr(tf.saved_model, "load", lambda d: exports[d])
  retrieve = bench.EnsembleRetrieval(["m1", "m2"], ["a", "b", "c"])
  at = tf.constant([1_500_000_000], tf.int64)
  top = retrieve(tf.constant(["u"]), tf.constant([[b""]]), 3, at)["item_ids"]
  assert top.numpy().tolist() == [[b"b", b"c", b"a"]]
  top = retrieve(tf.constant(["u"]), tf.constant([[b"b"]]), 2, at)["item_ids"]
  assert top.numpy().tolist() == [[b"c", b"a"]]
  # Each member's user embedding is asked as of the request's time.
  assert asked_at == [1_500_000_000] * 4
