"""Training: multi-device equivalence, mixed precision, warm start."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_python(code: str) -> dict:
  """Runs code in a fresh interpreter (logical devices and the mixed
  precision policy are process-wide); returns its last line as JSON."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO)
  out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO,
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


def _uris(small_run):
  u = small_run.artifacts
  return u.transform_graph, u.transformed_examples, u.examples


@pytest.mark.slow
def test_an_epoch_mirrored_over_two_cpus_matches_one_device(small_run,
                                                            tmp_path):
  """The multi-device (GPU) code path, on two logical CPU devices.

  Mirrored training splits each global batch between the replicas, gathers
  every replica's candidates for the in-batch softmax and sums the replicas'
  gradients, so it computes what one device computes on the same batches;
  only the order of float32 additions differs (relative error ~1e-7 per op).
  A share of the rows get served histories (and the query's history modes,
  trainer/served_history.py): drawn per global batch, before the split, so
  both runs see the same rows.
  After an epoch of Adam steps the logged losses (per-epoch means) drift by
  about 1e-6 relative; 1e-4 leaves room for that while staying far below
  what a real difference does: the control run, whose replicas see only
  their own half of the batch as negatives, is off by several percent.
  """
  graph, transformed, examples = _uris(small_run)
  code = f"""
import json
import trainer
import tensorflow as tf
from trainer.config import TrainerConfig
from trainer import distribution, run, tasks
mirrored = distribution.choose_strategy(2)  # before TF starts its devices
config = TrainerConfig(epochs=1, batch_size=512, embedding_dim=8,
                       served_history_fraction=0.3)
out = {{}}
def fit(name, strategy):
  tf.keras.utils.set_random_seed(config.seed)
  r = run.fit({graph!r}, {transformed!r}, {examples!r}, config,
              {str(tmp_path)!r} + "/" + name, strategy, log=lambda m: None)
  out[name] = {{k: v[-1] for k, v in r["history"].items()}}
  out[name]["replicas"] = strategy.num_replicas_in_sync
fit("single", tf.distribute.get_strategy())
fit("mirrored", mirrored)
tasks.gather_replicas = lambda *values: list(values)  # local negatives only
fit("local_negatives", mirrored)
print(json.dumps(out))
"""
  out = _run_python(code)
  single, mirrored = out["single"], out["mirrored"]
  assert (single["replicas"], mirrored["replicas"]) == (1, 2)
  for key in ("loss", "retrieval_loss", "rating_loss", "like_loss",
              "rating_rmse"):
    assert mirrored[key] == pytest.approx(single[key], rel=1e-4), key
  # AUC counts predictions in 200 threshold buckets: a 1e-6 change moves
  # the odd prediction across a bucket edge, so it agrees less closely.
  assert mirrored["like_auc"] == pytest.approx(single["like_auc"], abs=5e-3)
  control = out["local_negatives"]["retrieval_loss"]
  assert abs(control - single["retrieval_loss"]) > 0.02 * single[
      "retrieval_loss"]


@pytest.mark.slow
def test_ema_horizon_exports_the_moving_average_of_the_steps(small_run,
                                                            tmp_path):
  """trainer.ema_horizon: the model fit() returns holds the moving average
  of the weights after every step, at the momentum the horizon gives for
  the run's steps, not the last step's weights; and the two-device
  (mirrored) path averages the same way.

  The weights after each step are recorded by a callback and averaged here
  in numpy, from the weights training starts with. Half the run's steps as
  the horizon keeps about an eighth of those initial weights in the average
  (e^-2), so the last step's weights are far from it: a run that exported
  them fails the first check by orders of magnitude more than float32
  rounding.
  """
  graph, transformed, examples = _uris(small_run)
  code = f"""
import json
import numpy as np
import trainer
import tensorflow as tf
from trainer.config import TrainerConfig
from trainer import callbacks, distribution, run
mirrored = distribution.choose_strategy(2)  # before TF starts its devices
config = TrainerConfig(epochs=2, batch_size=512, embedding_dim=8,
                       ema_horizon=0.5)
trajectory = []
class Recording(callbacks.Throughput):
  def on_train_begin(self, logs=None):
    trajectory.append([v.numpy() for v in self.model.trainable_variables])
  def on_train_batch_end(self, batch, logs=None):
    trajectory.append([v.numpy() for v in self.model.trainable_variables])
run.callbacks_lib.Throughput = Recording
out = {{}}
final = {{}}
for name, strategy in (("single", tf.distribute.get_strategy()),
                       ("mirrored", mirrored)):
  trajectory.clear()
  tf.keras.utils.set_random_seed(config.seed)
  r = run.fit({graph!r}, {transformed!r}, {examples!r}, config,
              {str(tmp_path)!r} + "/" + name, strategy, log=lambda m: None)
  final[name] = [v.numpy() for v in r["model"].trainable_variables]
  steps = len(trajectory) - 1
  momentum = run.ema_momentum(config.ema_horizon, steps)
  average = [w.astype(np.float64) for w in trajectory[0]]
  for weights in trajectory[1:]:
    average = [momentum * a + (1 - momentum) * w
               for a, w in zip(average, weights)]
  out[name] = {{
      "steps": steps, "momentum": momentum,
      "to_average": max(float(np.max(np.abs(f - a)))
                        for f, a in zip(final[name], average)),
      "to_last_step": max(float(np.max(np.abs(f - w)))
                          for f, w in zip(final[name], trajectory[-1])),
  }}
out["mirrored_to_single"] = max(
    float(np.max(np.abs(m - s)))
    for m, s in zip(final["mirrored"], final["single"]))
print(json.dumps(out))
"""
  out = _run_python(code)
  single = out["single"]
  assert single["steps"] >= 4
  assert single["momentum"] == pytest.approx(1 - 2 / single["steps"])
  assert single["to_average"] < 1e-5
  assert single["to_last_step"] > 1e-2
  assert out["mirrored"]["steps"] == single["steps"]
  assert out["mirrored"]["to_average"] < 1e-5
  assert out["mirrored_to_single"] < 1e-3


@pytest.mark.slow
def test_mixed_precision_ple_uncertainty_and_warm_start(small_run, tmp_path):
  """A non-default model end to end: every task kind, PLE, learned weights,
  float16 compute, half the rows with their served history, and a warm
  start from the model the pipeline exported."""
  graph, transformed, examples = _uris(small_run)
  # Early stopping watches a validation split, which the small run has not:
  # a copy of its transformed examples with one (its eval rows will do here).
  with_validation = str(tmp_path / "transformed")
  shutil.copytree(transformed, with_validation)
  shutil.copytree(os.path.join(with_validation, "Split-eval"),
                  os.path.join(with_validation, "Split-validation"))
  transformed = with_validation
  base = os.path.join(small_run.artifacts.model, "Format-Serving")
  code = f"""
import json, numpy as np, tensorflow as tf
import trainer
from trainer.config import TrainerConfig
from trainer import run
config = TrainerConfig.model_validate(dict(
    epochs=2, batch_size=256, steps_per_epoch=4, embedding_dim=16,
    mixed_precision="on", loss_weighting="uncertainty",
    served_history_fraction=0.5,
    shared_layers=dict(kind="ple", levels=2, tower_units=[8]),
    tasks=[dict(name="retrieval", kind="retrieval", temperature=0.5),
           dict(name="rating", kind="regression", label="rating",
                loss="huber"),
           dict(name="like", kind="binary", label="like"),
           dict(name="click", kind="binary", label="click"),
           dict(name="interest", kind="multilabel", label="categories",
                weight=0.5)],
    early_stopping=dict(monitor="val_like_auc", patience=0)))
s = run.run_trainer({graph!r}, {transformed!r}, {examples!r},
    {small_run.artifacts.catalog!r}, {str(tmp_path / "model")!r},
    "t", config, "mtrec", 5, log=lambda m: None, warm_start_from={base!r})
m = tf.saved_model.load({str(tmp_path / "model" / "Format-Serving")!r})
rec = m.signatures["recommend"](user_id=tf.constant(["u1", "nobody"]))
sd = m.signatures["serving_default"](user_id=tf.constant(["u1"]),
                                     item_id=tf.constant(["i1"]))
s["rec_keys"] = sorted(rec)
s["sd_shapes"] = {{k: list(v.shape) for k, v in sd.items()}}
s["finite"] = bool(all(np.isfinite(v.numpy()).all() for d in (rec, sd)
                       for v in d.values() if v.dtype != tf.string))
print(json.dumps(s))
"""
  s = _run_python(code)
  assert s["mixed_precision"] is True and s["finite"]
  assert all(np.isfinite(v) for v in s["final_task_losses"].values())
  # Uncertainty weighting learned: the weights left their static start.
  start = {"retrieval": 1.0, "rating": 1.0, "like": 1.0, "click": 1.0,
           "interest": 0.5}
  assert set(s["task_weights"]) == set(start)
  assert all(abs(s["task_weights"][t] - w) > 1e-3 for t, w in start.items())
  # Warm start: towers carried over (same shapes), id tables row by row.
  warm = s["warm_start"]
  assert warm["copied"] > 0
  assert warm["remapped"]["item_id"][0] == warm["remapped"]["item_id"][1] > 0
  assert s["rec_keys"] == sorted([
      "item_ids", "titles", "scores", "retrieval_scores", "because_item_ids",
      "rating", "p_like", "p_click"] + [
          f"contribution_{t}" for t in ("retrieval", "rating", "like",
                                        "click")])
  # The fusion search ran (in float32, beside float16 training) and the
  # served model was refit.
  assert set(s["fusion_weights"]) == {"retrieval", "rating", "like", "click"}
  assert s["fusion_search"]["refit"] is True
  assert s["fusion_search"]["validation_model_seconds"] > 0
  assert s["sd_shapes"]["p_interest"][0] == 1  # [users, categories]
  assert s["sd_shapes"]["rating"] == [1]
  assert s["epochs"] in (1, 2)  # early stopping may end it after one


@pytest.mark.slow
def test_warm_start_moves_id_rows_by_token(small_run, tmp_path):
  # pylint: disable=g-import-not-at-top
  import trainer  # noqa: F401  pylint: disable=unused-import
  import tensorflow as tf
  import tensorflow_transform as tft
  from contracts import features as F
  from components import schema
  from trainer.config import TrainerConfig
  from trainer import data
  from trainer import inputs as inputs_lib
  from trainer import run
  from trainer import warm_start
  # pylint: enable=g-import-not-at-top

  graph, transformed, examples = _uris(small_run)
  export_dir = os.path.join(small_run.artifacts.model, "Format-Serving")
  tft_output = tft.TFTransformOutput(graph)
  spec = tft_output.transformed_feature_spec()
  inputs = inputs_lib.discover(
      spec, tft_output.vocabulary_size_by_name,
      schema.user_features_of(schema.read_feature_spec(examples)))
  config = TrainerConfig(embedding_dim=16)  # as small_config's run
  stats = data.training_statistics(
      data.make_dataset(transformed, "train", spec, 4096, shuffle=False),
      inputs.item_id.size, data.scalar_labels(config.tasks))
  model = run.build_model(inputs, config, stats)
  model(next(iter(data.make_dataset(transformed, "train", spec, 8,
                                    shuffle=False))))
  # The new run's item vocabulary: reversed, one item gone, one new.
  old_tokens = tft_output.vocabulary_by_name(F.ITEM_ID_VOCAB)
  new_tokens = list(reversed(old_tokens[1:])) + [b"brand-new-item"]
  files = {v.vocab_name: tft_output.vocabulary_file_by_name(v.vocab_name)
           for v in inputs.vocabularies()}
  files[F.ITEM_ID_VOCAB] = str(tmp_path / "item_id")
  (tmp_path / "item_id").write_bytes(b"\n".join(new_tokens) + b"\n")
  table = model.candidate_tower.item_embedding
  fresh = table.embeddings.numpy().copy()
  summary = warm_start.restore(model, export_dir, files)

  with np.load(os.path.join(export_dir, warm_start.STATE_DIR,
                            warm_start.WEIGHTS_FILE)) as old:
    path = {v: p for p, v in warm_start.id_tables(model).items()}[
        F.ITEM_ID_VOCAB]
    before = old[path]
    now = table.embeddings.numpy()
    old_row = {t: i for i, t in enumerate(old_tokens)}
    for j, token in enumerate(new_tokens[:-1]):
      np.testing.assert_array_equal(now[j], before[old_row[token]])
    new_index = len(new_tokens) - 1
    np.testing.assert_array_equal(now[new_index], fresh[new_index])
    np.testing.assert_array_equal(now[-1], before[-1])  # OOV row
    dense = "query_tower.projection.kernel"
    np.testing.assert_array_equal(
        model.get_weight_paths()[dense].numpy(), old[dense])
  assert summary["remapped"][F.ITEM_ID_VOCAB] == [len(new_tokens) - 1,
                                                  len(new_tokens)]
  assert summary["copied"] > 5 and not summary["fresh"]
  tf.keras.backend.clear_session()


def test_trainer_step_warm_starts_from_the_served_version(tmp_path,
                                                          monkeypatch):
  from conftest import small_config  # pylint: disable=g-import-not-at-top
  from contracts import serving_layout  # pylint: disable=g-import-not-at-top
  from pipeline import steps  # pylint: disable=g-import-not-at-top
  from pipeline.steps import trainer as trainer_step  # pylint: disable=g-import-not-at-top
  from trainer import run  # pylint: disable=g-import-not-at-top
  serving = tmp_path / "serving"
  for version in ("1", "3", "2"):
    os.makedirs(serving / "mtrec" / version)
    (serving / "mtrec" / version / "saved_model.pb").write_bytes(b"m")
  os.makedirs(serving / "mtrec" / "4")  # incomplete: never the answer
  seen = {}

  def fake_run_trainer(*args, **kwargs):
    seen["warm_start_from"] = kwargs["warm_start_from"]
    return {"epochs": 1, "strategy": "x", "examples_per_second": 1.0}

  monkeypatch.setattr(run, "run_trainer", fake_run_trainer)
  uris = steps.ArtifactUris(transform_graph="", transformed_examples="",
                            examples="", catalog="", model="")
  for warm, pin, expected in ((True, None, "3"), (True, 2, "2"),
                              (False, 2, None)):
    if pin:
      serving_layout.pin_version(str(serving), "mtrec", pin)
    config = small_config(serving_root=str(serving),
                          trainer={"epochs": 1, "warm_start": warm})
    source = trainer_step.warm_start_source(config.trainer, str(serving),
                                            "mtrec")
    trainer_step.run(config.trainer, config.serving, "mtrec", "r", uris,
                     with_item_text=False, warm_start_from=source)
    assert seen["warm_start_from"] == (
        str(serving / "mtrec" / expected) if expected else None)
