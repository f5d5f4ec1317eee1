"""Transform (TFT on Beam): labels, weights, vocabularies with OOV, time."""

import os

import pytest
import tensorflow as tf
import tensorflow_transform as tft

from contracts import artifacts
from components import example_gen
from contracts import features as F
from components import parsing
from components import transform
from components.readers import build_reader


@pytest.fixture(scope="module")
def transformed(tmp_path_factory):
  d = tmp_path_factory.mktemp("transform")
  # user, item, rating, like, ts. Timestamp 0 is Thursday 00:00 UTC.
  (d / "events.csv").write_text(
      "u,i,r,l,t\n"
      "a,x,4.5,,0\n"          # like derived from rating >= 4
      "a,y,3.0,,90000\n"      # Friday 01:00; rating 3 -> like 0
      "b,x,,1,3600\n"         # explicit like, no rating
      "b,y,2.0,1,7200\n"      # explicit like wins over the rating
      "a,w,1.0,,200000\n"     # a's latest event: eval
      "b,z,5.0,,999999\n")    # b's latest event: eval; z only in eval
  reader = build_reader("tabular", interactions={
      "path": str(d / "events.csv"),
      "columns": {"user_id": "u", "item_id": "i", "rating": "r", "like": "l",
                  "timestamp": "t"}})
  examples = str(d / "examples")
  example_gen.run_example_gen(
      reader, parsing.ValidationRules(0, 5, 0, 2_000_000_000), examples,
      str(d / "catalog"), str(d / "quarantine"), "t", split="temporal_user",
      eval_fraction=0.2)
  transform.run_transform(examples, str(d / "graph"), str(d / "out"), "t",
                          like_threshold=4.0)
  return d


def _rows(d, split):
  spec = tft.TFTransformOutput(str(d / "graph")).transformed_feature_spec()
  files = [os.path.join(artifacts.split_dir(str(d / "out"), split), f)
           for f in os.listdir(artifacts.split_dir(str(d / "out"), split))]
  rows = []
  for rec in tf.data.TFRecordDataset(files, compression_type="GZIP"):
    ex = tf.io.parse_single_example(rec, spec)
    rows.append({k: (v.values.numpy().tolist() if isinstance(
        v, tf.SparseTensor) else v.numpy().item()) for k, v in ex.items()})
  return sorted(rows, key=lambda x: (x[F.USER_ID], x[F.HOUR], x[F.WEEKDAY]))


def test_labels_and_weights(transformed):
  got = sorted((r[F.RATING], r[F.RATING_WEIGHT], r[F.LIKE], r[F.LIKE_WEIGHT])
               for r in _rows(transformed, "train"))
  assert got == sorted([(4.5, 1.0, 1.0, 1.0), (3.0, 1.0, 0.0, 1.0),
                        (0.0, 0.0, 1.0, 1.0), (2.0, 1.0, 1.0, 1.0)])


def test_time_features(transformed):
  got = sorted((r[F.HOUR], r[F.WEEKDAY]) for r in _rows(transformed, "train"))
  # 0 -> Thu 00h, 3600 -> Thu 01h, 7200 -> Thu 02h, 90000 -> Fri 01h.
  assert got == [(0, 3), (1, 3), (1, 4), (2, 3)]


def test_vocabulary_from_train_only_with_oov(transformed):
  out = tft.TFTransformOutput(str(transformed / "graph"))
  assert out.vocabulary_size_by_name(F.ITEM_ID_VOCAB) == 2  # x, y
  evals = _rows(transformed, "eval")
  # w and z appear only in eval: both fall into the OOV bucket (index 2).
  assert [r[F.ITEM_ID] for r in evals] == [2, 2]
  assert [r[F.RETRIEVAL_WEIGHT] for r in evals] == [1.0, 1.0]
  assert out.vocabulary_size_by_name(F.USER_ID_VOCAB) == 2


def test_history_is_indexed_by_the_item_vocabulary(transformed):
  out = tft.TFTransformOutput(str(transformed / "graph"))
  index = {v.decode(): i for i, v in enumerate(
      out.vocabulary_by_name(F.ITEM_ID_VOCAB))}
  # Both eval events come after the user's x and y (in time order).
  assert sorted(r[F.HISTORY] for r in _rows(transformed, "eval")) == [
      [index["x"], index["y"]]] * 2
  train = _rows(transformed, "train")
  histories = sorted(r[F.HISTORY] for r in train)
  # a: [] then [x]; b: [] then [x]. An item's own event never holds it.
  assert histories == [[], [], [index["x"]], [index["x"]]]
  assert all(r[F.ITEM_ID] not in r[F.HISTORY] for r in train)


def test_output_goes_through_record_batches_without_tfts_warning(
    transformed, caplog):
  # The same examples again, into a new place: TFT's "instance dicts" warning
  # (its slow path) must not appear, and the output must match the first run.
  examples = str(transformed / "examples")
  with caplog.at_level("WARNING"):
    transform.run_transform(examples, str(transformed / "graph2"),
                            str(transformed / "out2"), "t2",
                            like_threshold=4.0)
  assert not [r for r in caplog.records if "instance dicts" in r.getMessage()]
  first = _rows(transformed, "train")
  os.rename(transformed / "out", transformed / "out1")
  os.rename(transformed / "out2", transformed / "out")
  try:
    assert _rows(transformed, "train") == first
  finally:
    os.rename(transformed / "out", transformed / "out2")
    os.rename(transformed / "out1", transformed / "out")
