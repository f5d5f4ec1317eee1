"""Test-wide environment: must run before TensorFlow is imported anywhere."""

import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # TFRS needs Keras 2.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Two logical CPU devices let distribution-strategy tests run without a GPU.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SHARED_DATA = os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))

import pytest  # noqa: E402

from components import config as _components_config  # noqa: E402


def _requires_text_extra():
  """Skips a test that needs the optional extra mtrec[text] (torch,
  sentence-transformers, the MiniLM weights) where it is not installed.
  `make test` installs it and sets MTREC_REQUIRE_TEXT_EXTRA, so there a
  missing extra fails these tests instead of skipping them quietly."""
  missing = _components_config.missing_text_extra()
  return pytest.mark.skipif(
      bool(missing) and not os.environ.get("MTREC_REQUIRE_TEXT_EXTRA"),
      reason=f"needs the optional extra mtrec[text] ({', '.join(missing)} "
      "not installed): pip install -c constraints.txt -e '.[text]'")


requires_text_extra = _requires_text_extra()


def small_config(**overrides):
  """A pipeline config on synthetic data, small enough for tests."""
  from pipeline import config as config_lib  # pylint: disable=g-import-not-at-top
  return config_lib.parse_config(small_config_raw(**overrides))


def small_config_raw(**overrides):
  """small_config's YAML content, for tests that run `mtrec run` itself."""
  raw = {
      "pipeline_name": "test",
      "model_name": "mtrec",
      "data": {"format": "synthetic",
               "options": {"num_interactions": 8000, "seed": 3}},
      "example_gen": {"rating_min": 1, "rating_max": 5},
      "trainer": {"epochs": 2, "batch_size": 256, "embedding_dim": 16},
      "evaluator": {"ks": [10, 20], "must_beat_popularity": []},
      "serving": {"top_k": 5},
  }
  raw.update(overrides)
  return raw


@pytest.fixture(scope="session")
def small_run(tmp_path_factory):
  """One whole pipeline run on synthetic data, shared by the tests that
  inspect its artifacts (trainer exports, serving, lineage)."""
  import trainer  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  from pipeline import runner  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp("small_run")
  result = runner.run_pipeline(
      small_config(), output_dir=str(root / "runs"),
      serving_root=str(root / "serving"), log=lambda m: None)
  return result


# gRPC stubs on a module's `server` fixture (a started ModelServer).


@pytest.fixture(scope="module")
def channel(server):
  import grpc  # pylint: disable=g-import-not-at-top
  with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
    yield channel


@pytest.fixture(scope="module")
def stub(channel):
  from serving import apis  # pylint: disable=g-import-not-at-top
  return apis.PredictionServiceStub(channel)


@pytest.fixture(scope="module")
def model_stub(channel):
  from serving import apis  # pylint: disable=g-import-not-at-top
  return apis.ModelServiceStub(channel)


# Catalog items for the text tests: a duplicate text (a, d), an item with
# no text at all (c), and shared words (a, e).
TEXT_ITEMS = [
    {"item_id": "a", "title": "Rocket to Mars (2001)",
     "categories": ["Sci-Fi"], "tags": ["space", "astronauts"]},
    {"item_id": "b", "title": "Pasta Night", "categories": ["Comedy"],
     "tags": []},
    {"item_id": "c", "title": "", "categories": ["(no genres listed)"],
     "tags": []},
    {"item_id": "d", "title": "Rocket to Mars (2001)",
     "categories": ["Sci-Fi"], "tags": ["space", "astronauts"]},
    {"item_id": "e", "title": "Galaxy Voyage", "categories": ["Sci-Fi"],
     "tags": ["space"]},
]


# Two evaluations of the same model, trained twice: equal up to what float
# summation order in TensorFlow's threads can move.


def _metric_numbers(value, path=""):
  """Every number in a metrics document, by path; timings left out."""
  if isinstance(value, dict):
    out = {}
    for k, v in value.items():
      if not ("seconds" in k or k.endswith("_ms") or
              k in ("created_at", "latency_ms")):
        out.update(_metric_numbers(v, f"{path}/{k}"))
    return out
  if isinstance(value, list):
    out = {}
    for i, v in enumerate(value):
      out.update(_metric_numbers(v, f"{path}/{i}"))
    return out
  return {path: value} if isinstance(value, (int, float)) else {}


def _calibration_totals(calibration):
  """Per head: (examples, observed positive rate, mean prediction)."""
  totals = {}
  for head, buckets in calibration.items():
    count = sum(b["count"] for b in buckets)
    totals[head] = (
        count,
        sum(b["count"] * b["observed_rate"] for b in buckets) / count,
        sum(b["count"] * b["mean_predicted"] for b in buckets) / count)
  return totals


def assert_same_evaluation(got, expected):
  """Two metrics.json documents of the Evaluator agree.

  A calibration bucket's count moves when a prediction near its edge moves
  by a float rounding; what cannot move is each head's example count, its
  observed positive rate, and (to tolerance) its mean prediction. The
  report's example explanations name the first item of a list, which a
  near-tie can change: left out. The overall figures are equal up to a few
  near-ties flipped in top-k lists: one hit among ~120 users with a liked
  item moves a recall by about 0.0085, a mean popularity by about 1%.
  """
  got, expected = dict(got), dict(expected)
  for document in (got, expected):
    document.pop("explanations", None)
  got_calibration = _calibration_totals(got.pop("calibration"))
  expected_calibration = _calibration_totals(expected.pop("calibration"))
  assert got_calibration.keys() == expected_calibration.keys()
  for head, (count, rate, predicted) in expected_calibration.items():
    got_count, got_rate, got_predicted = got_calibration[head]
    assert got_count == count, head
    assert got_rate == pytest.approx(rate, rel=1e-6), head
    assert got_predicted == pytest.approx(predicted, abs=1e-2), head
  # The overall figures (every model's, over all eval users): slices of
  # 20-50 users, bootstrap bounds and paired differences move by several
  # near-ties at once (seen: 0.05 on a 19-user slice), so they are left
  # to the overall figures they summarize.
  got, expected = (_metric_numbers(got["overall"]),
                   _metric_numbers(expected["overall"]))
  assert got.keys() == expected.keys()
  differ = {key: (got[key], value) for key, value in expected.items()
            if got[key] != pytest.approx(value, rel=2e-2, abs=2e-2)}
  assert not differ
