"""Config loading: typed, validated, offending key named."""

import os
import re

import pytest

from pipeline import config as C

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_shipped_configs_load():
  for name in ("demo.yaml", "movielens_latest_small.yaml",
               "tabular_example.yaml"):
    cfg = C.load_config(os.path.join(REPO, "configs", name))
    assert cfg.model_name


def test_relative_data_paths_resolve_against_the_config_file():
  cfg = C.load_config(os.path.join(REPO, "configs",
                                   "movielens_latest_small.yaml"))
  assert cfg.data.options["path"] == os.path.normpath(
      os.path.join(REPO, "..", "shared", "data", "ml-latest-small"))


@pytest.mark.parametrize("raw, message", [
    ({"data": {"format": "synthetic"}, "trainer": {"epochs": "many"}},
     "trainer.epochs: Input should be a valid integer"),
    ({"data": {"format": "synthetic"}, "trainer": {"epoch": 3}},
     "trainer.epoch: Extra inputs are not permitted"),
    ({"data": {"format": "csv"}}, "data.format: Input should be"),
    ({}, "data: Field required"),
    ({"data": {"format": "synthetic"}, "example_gen": {"eval_fraction": 1.5}},
     "example_gen.eval_fraction: Input should be less than 1"),
])
def test_bad_values_name_the_key(raw, message):
  with pytest.raises(C.ConfigError, match="^x.yaml: .*" + message.replace(
      "[", r"\[")):
    C.parse_config(raw, source="x.yaml")


def test_unreadable_yaml(tmp_path):
  p = tmp_path / "bad.yaml"
  p.write_text("data: [unclosed")
  with pytest.raises(C.ConfigError, match="invalid YAML"):
    C.load_config(str(p))


_TASKS = [{"name": "retrieval", "kind": "retrieval"},
          {"name": "click", "kind": "binary", "label": "click"},
          {"name": "watch_fraction", "kind": "regression",
           "label": "watch_fraction"},
          {"name": "interest", "kind": "multilabel", "label": "categories"}]


def test_evaluator_metrics_of_the_configured_tasks_load():
  cfg = C.parse_config({
      "data": {"format": "synthetic"}, "trainer": {"tasks": _TASKS},
      "evaluator": {"ks": [10, 20],
                    "thresholds": {"click_auc": {"min": 0.55},
                                   "click_calibration": {"min": 0.8,
                                                         "max": 1.25},
                                   "watch_fraction_rmse": {"max": 0.5},
                                   "interest_recall_at_5": {"min": 0.1},
                                   "liked_recall_at_20": {"min": 0.01}},
                    "max_regression": {"graded_ndcg_at_10": 0.01,
                                       "click_log_loss": 0.02,
                                       "interest_auc": 0.01},
                    "must_beat_popularity": ["liked_recall_at_20",
                                             "mrr"]}})
  assert set(cfg.evaluator.thresholds) >= {"click_auc", "click_calibration"}
  # The legacy names still load with the default tasks (rating, like).
  cfg = C.parse_config({"data": {"format": "synthetic"}, "evaluator": {
      "thresholds": {"rmse": {"max": 1.0}, "auc": {"min": 0.6}},
      "max_regression": {"mae": 0.1, "log_loss": 0.1}}})
  assert set(cfg.evaluator.thresholds) == {"rmse", "auc"}


@pytest.mark.parametrize("evaluator, message", [
    ({"thresholds": {"like_auc": {"min": 0.5}}},
     "evaluator.thresholds.like_auc: no task named like"),
    ({"max_regression": {"rmse": 0.1}},
     "evaluator.max_regression.rmse: rmse is rating_rmse: no task named "
     "rating"),
    ({"thresholds": {"watch_fraction_auc": {"min": 0.5}}},
     "evaluator.thresholds.watch_fraction_auc: task watch_fraction is "
     "regression: its metrics are watch_fraction_rmse, watch_fraction_mae"),
    ({"must_beat_popularity": ["recall_at_50"]},
     "evaluator.must_beat_popularity.recall_at_50: K=50 is not one of "
     "evaluator.ks [10, 20]"),
    ({"must_beat_popularity": ["click_auc"]},
     "evaluator.must_beat_popularity.click_auc: popularity has no ranking "
     "heads"),
    ({"max_regression": {"click_calibration": 0.1}},
     "evaluator.max_regression.click_calibration: best at 1"),
    ({"thresholds": {"recal_at_20": {"min": 0.1}}},
     "evaluator.thresholds.recal_at_20: unknown metric"),
])
def test_evaluator_metric_names_are_checked_against_the_tasks(evaluator,
                                                              message):
  raw = {"data": {"format": "synthetic"}, "trainer": {"tasks": _TASKS},
         "evaluator": dict({"ks": [10, 20], "must_beat_popularity": []},
                           **evaluator)}
  with pytest.raises(C.ConfigError, match="^x.yaml: " + re.escape(message)):
    C.parse_config(raw, source="x.yaml")


def test_the_evaluator_section_alone_checks_the_shape_of_names():
  """A KFP parameter carries the section without the tasks: shapes only."""
  from components.config import EvaluatorConfig  # pylint: disable=g-import-not-at-top
  from contracts import config as contracts_config  # pylint: disable=g-import-not-at-top
  ok = contracts_config.parse_section(
      EvaluatorConfig, '{"thresholds": {"click_auc": {"min": 0.5}}}',
      "evaluator")
  assert "click_auc" in ok.thresholds
  with pytest.raises(contracts_config.ConfigError,
                     match=r"^parameter evaluator: evaluator\.thresholds\."
                     r"rmse: the same metric as rating_rmse"):
    contracts_config.parse_section(
        EvaluatorConfig, '{"thresholds": {"rmse": {"max": 1}, '
        '"rating_rmse": {"max": 1}}}', "evaluator")


def test_a_metric_of_a_task_the_default_model_lacks_names_the_key():
  with pytest.raises(C.ConfigError, match=re.escape(
      "x.yaml: evaluator.thresholds.click_auc: no task named click")):
    C.parse_config({"data": {"format": "synthetic"}, "evaluator": {
        "thresholds": {"click_auc": {"min": 0.5}}}}, source="x.yaml")
