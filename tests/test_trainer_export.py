"""The exported SavedModel: signatures, raw inputs, consistency, core ops."""

import collections
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from contracts import artifacts
from contracts import model_layout
from trainer import export
from trainer import run as trainer_run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _model_dir(small_run):
  return model_layout.saved_model_dir(small_run.artifacts.model)


def _fresh_python(code: str) -> str:
  """Runs code in a new interpreter that never imports TFT or mtrec."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  out = subprocess.run([sys.executable, "-c", code], env=env, cwd="/",
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  return out.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_signatures_answer_raw_values_in_a_fresh_process(small_run):
  code = f"""
import json, numpy as np, sys, tensorflow as tf
m = tf.saved_model.load({_model_dir(small_run)!r})
assert "tensorflow_transform" not in sys.modules
users = tf.constant(["u1", "u2", "no-such-user"])
items = tf.constant(["i1", "i2", "no-such-item"])
rec = m.signatures["recommend"](user_id=users)
top = rec["item_ids"].numpy()
exclude = tf.constant([[top[0, 0], top[0, 2]], [b"", b""], [b"nope", b""]])
rex = m.signatures["recommend_excluding"](user_id=users,
    exclude_item_ids=exclude, k=tf.constant(7))
big = m.signatures["recommend_excluding"](user_id=users[:1],
    exclude_item_ids=tf.constant([[b""]]), k=tf.constant(100000))
sd = m.signatures["serving_default"](user_id=users, item_id=items)
eu = m.signatures["embed_user"](user_id=users)["embedding"].numpy()
ei = m.signatures["embed_item"](item_id=items)["embedding"].numpy()
ex = tf.train.Example()
ex.features.feature["user_id"].bytes_list.value.append(b"u1")
ex.features.feature["item_id"].bytes_list.value.append(b"i1")
pe = m.signatures["predict_examples"](examples=tf.constant([ex.SerializeToString()]))
out = dict(
  signatures=sorted(m.signatures.keys()),
  rec={{k: list(v.shape) for k, v in rec.items()}},
  rec_sorted=bool(np.all(np.diff(rec["scores"].numpy(), axis=1) <= 1e-6)),
  because=[[x.decode() for x in row] for row in rec["because_item_ids"].numpy()],
  rex_shape=list(rex["item_ids"].shape),
  rex_first=[x.decode() for x in rex["item_ids"].numpy()[0]],
  rex_same_as_rec=bool((rex["item_ids"].numpy()[1, :5] == top[1]).all()),
  excluded=[top[0, 0].decode(), top[0, 2].decode()],
  big=int(big["item_ids"].shape[1]),
  sd={{k: v.numpy().tolist() for k, v in sd.items()}},
  dots=np.sum(eu * ei, axis=1).tolist(),
  pe={{k: v.numpy().tolist() for k, v in pe.items()}},
  finite=bool(all(np.all(np.isfinite(v.numpy())) for d in (rec, rex, sd, pe)
                  for k, v in d.items() if v.dtype != tf.string)),
)
print(json.dumps(out))
"""
  out = json.loads(_fresh_python(code))
  assert out["signatures"] == sorted(export.SIGNATURES)
  assert out["rec"] == {k: [3, 5] for k in (
      "item_ids", "titles", "scores", "retrieval_scores", "rating", "p_like",
      "because_item_ids", "contribution_retrieval", "contribution_rating",
      "contribution_like")}
  assert out["rec_sorted"] and out["finite"]
  # A user the model does not know has no history to explain with (the
  # explanations of known users: the next test).
  assert not any(out["because"][2])
  # recommend_excluding: k items, none excluded, otherwise the same ranking.
  assert out["rex_shape"] == [3, 7]
  assert not set(out["excluded"]) & set(out["rex_first"])
  assert out["rex_same_as_rec"]
  assert out["big"] == 100  # k is capped at serving.max_k
  # serving_default's affinity is the dot product of the two towers...
  np.testing.assert_allclose(out["sd"]["affinity"], out["dots"], rtol=1e-4,
                             atol=1e-4)
  assert all(0.0 <= p <= 1.0 for p in out["sd"]["p_like"])
  # ...and predict_examples agrees with serving_default on the same pair.
  np.testing.assert_allclose(out["pe"]["affinity"][0], out["sd"]["affinity"][0],
                             rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_explanations_and_history_come_from_the_users_training_events(
    small_run):
  from trainer import data  # pylint: disable=g-import-not-at-top
  histories = data.latest_histories(small_run.artifacts.examples, 20)
  user = max(histories, key=lambda u: len(set(histories[u])))
  m = tf.saved_model.load(_model_dir(small_run))
  rec = m.signatures["recommend"](user_id=tf.constant([user]))
  because = {x.decode() for x in rec["because_item_ids"].numpy()[0]}
  assert because <= set(histories[user]) and because - {""}
  # predict_examples takes the event's own history when the example has one.
  def example(history):
    ex = tf.train.Example()
    f = ex.features.feature
    f["user_id"].bytes_list.value.append(user.encode())
    f["item_id"].bytes_list.value.append(histories[user][0].encode())
    f["timestamp"].int64_list.value.append(1_600_000_000)
    f["history_item_ids"].bytes_list.value.extend(
        [h.encode() for h in history])
    return ex.SerializeToString()
  pe = m.signatures["predict_examples"](examples=tf.constant([
      example([]), example(histories[user]), example(histories[user][:1])]))
  affinity = pe["affinity"].numpy()
  assert affinity[0] == pytest.approx(affinity[1], abs=1e-5)  # the latest
  assert affinity[2] != pytest.approx(affinity[1], abs=1e-4)


@pytest.mark.slow
def test_recommend_scores_match_serving_default(small_run):
  m = tf.saved_model.load(_model_dir(small_run))
  rec = m.signatures["recommend"](user_id=tf.constant(["u1"]))
  items = rec["item_ids"].numpy()[0]
  sd = m.signatures["serving_default"](
      user_id=tf.constant(["u1"] * len(items)), item_id=tf.constant(items))
  np.testing.assert_allclose(rec["retrieval_scores"].numpy()[0],
                             sd["affinity"].numpy(), rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(rec["rating"].numpy()[0], sd["rating"].numpy(),
                             rtol=1e-3, atol=1e-3)


@pytest.mark.slow
def test_recommend_equals_brute_force_over_the_full_query_tower(small_run):
  # recommend precomputes each user's query term and ranks in blocks;
  # embed_user runs the whole query tower: a known user, one without
  # history or profile row of its own, and an unknown one.
  # With the fusion's ranking weights at 0 the order is the retrieval one.
  m = tf.saved_model.load(_model_dir(small_run))
  users = tf.constant(["u1", "u7", "nobody"])
  with open(model_layout.model_card_path(_model_dir(small_run))) as f:
    kinds = ["retrieval" if t == "retrieval" else "ranking"
             for t in json.load(f)["ranking"]["fusion_tasks"]]
  weights = tf.constant([[float(k == "retrieval") for k in kinds]] * 3)
  rec = m.signatures["recommend_weighted"](
      user_id=users, exclude_item_ids=tf.constant([[""]] * 3),
      k=tf.constant(5), fusion_weights=weights)
  queries = m.signatures["embed_user"](user_id=users)["embedding"].numpy()
  items = m.item_ids.numpy()
  catalog = m.signatures["embed_item"](
      item_id=tf.constant(items))["embedding"].numpy()
  scores = queries @ catalog.T
  k = rec["item_ids"].shape[1]
  best = np.argsort(-scores, axis=1, kind="stable")[:, :k]
  np.testing.assert_array_equal(rec["item_ids"].numpy(), items[best])
  np.testing.assert_allclose(rec["retrieval_scores"].numpy(),
                             np.take_along_axis(scores, best, axis=1),
                             rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_graph_holds_only_core_tensorflow_ops(small_run):
  code = f"""
import json, tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.framework import op_def_registry
sm = saved_model_pb2.SavedModel()
sm.ParseFromString(open({os.path.join(_model_dir(small_run), "saved_model.pb")!r}, "rb").read())
ops = set()
for mg in sm.meta_graphs:
  ops |= {{n.op for n in mg.graph_def.node}}
  for f in mg.graph_def.library.function:
    ops |= {{n.op for n in f.node_def}}
  fn_names = {{f.signature.name for f in mg.graph_def.library.function}}
unknown = sorted(o for o in ops if o not in fn_names and op_def_registry.get(o) is None)
print(json.dumps({{"n": len(ops), "unknown": unknown}}))
"""
  out = json.loads(_fresh_python(code))
  assert out["n"] > 20
  assert out["unknown"] == []


@pytest.mark.slow
def test_warmup_requests_and_training_history(small_run):
  from serving import apis  # pylint: disable=g-import-not-at-top
  path = os.path.join(_model_dir(small_run), model_layout.WARMUP_FILE)
  logs = [apis.PredictionLog.FromString(r.numpy())
          for r in tf.data.TFRecordDataset(path)]
  assert [r.predict_log.request.model_spec.signature_name for r in logs] == [
      "recommend", "serving_default"]
  meta = artifacts.read_metadata(small_run.artifacts.model)
  assert set(meta["summary"]["final_task_losses"]) == {
      "retrieval", "rating", "like"}
  assert meta["inputs"]["transform_graph"]["fingerprint"]
  with open(os.path.join(small_run.artifacts.model,
                         trainer_run.HISTORY_FILE)) as f:
    history = json.load(f)
  assert len(history["retrieval_loss"]) == 2  # one value per epoch




@pytest.mark.slow
def test_tensorboard_gets_task_losses_and_weights_every_epoch(small_run):
  logs = os.path.join(small_run.artifacts.model, trainer_run.LOG_DIR,
                      "train")
  values = collections.defaultdict(dict)
  for name in os.listdir(logs):
    for event in tf.compat.v1.train.summary_iterator(os.path.join(logs, name)):
      for v in event.summary.value:
        assert v.metadata.plugin_data.plugin_name == "scalars"
        values[v.tag][event.step] = float(tf.make_ndarray(v.tensor))
  for task in ("retrieval", "rating", "like"):
    assert sorted(values[f"{task}_loss"]) == [0, 1]  # two epochs
    assert sorted(values[f"weight/{task}"]) == [0, 1]
  with open(os.path.join(small_run.artifacts.model,
                         trainer_run.HISTORY_FILE)) as f:
    history = json.load(f)
  assert values["rating_loss"][1] == pytest.approx(history["rating_loss"][1])
  meta = artifacts.read_metadata(small_run.artifacts.model)
  assert meta["summary"]["task_weights"] == pytest.approx(
      {t: values[f"weight/{t}"][1] for t in ("retrieval", "rating", "like")})
