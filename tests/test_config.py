"""Config loading: typed, validated, offending key named."""

import os
import re

import pytest

from conftest import requires_text_extra
from pipeline import config as C

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A valid data section for tests about other sections.
_DATA = {"format": "synthetic", "options": {"num_interactions": 100}}


@requires_text_extra  # movielens_latest_small.yaml enables the TextEmbedder
def test_shipped_configs_load():
  for name in ("demo.yaml", "movielens_latest_small.yaml",
               "tabular_example.yaml"):
    cfg = C.load_config(os.path.join(REPO, "configs", name))
    assert cfg.model_name


@requires_text_extra  # movielens_latest_small.yaml enables the TextEmbedder
def test_relative_data_paths_resolve_against_the_config_file():
  cfg = C.load_config(os.path.join(REPO, "configs",
                                   "movielens_latest_small.yaml"))
  assert cfg.data.options["path"] == os.path.normpath(
      os.path.join(REPO, "..", "shared", "data", "ml-latest-small"))


@pytest.mark.parametrize("raw, message", [
    ({"data": _DATA, "trainer": {"epochs": "many"}},
     "trainer.epochs: Input should be a valid integer"),
    ({"data": _DATA, "trainer": {"epoch": 3}},
     "trainer.epoch: Extra inputs are not permitted"),
    ({"data": {"format": "csv"}}, "data.format: Input should be"),
    ({}, "data: Field required"),
    ({"data": _DATA, "example_gen": {"eval_fraction": 1.5}},
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
      "data": _DATA, "trainer": {"tasks": _TASKS},
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
  cfg = C.parse_config({"data": _DATA, "evaluator": {
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
  raw = {"data": _DATA, "trainer": {"tasks": _TASKS},
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
    C.parse_config({"data": _DATA, "evaluator": {
        "thresholds": {"click_auc": {"min": 0.5}}}}, source="x.yaml")


@pytest.mark.parametrize("data, message", [
    ({"format": "synthetic", "options": {"num_interactionz": 5}},
     "data.options.num_interactions: Field required; "
     "data.options.num_interactionz: Extra inputs are not permitted"),
    ({"format": "synthetic", "options": {"num_interactions": 5, "days": 0}},
     "data.options.days: Input should be greater than 0"),
    ({"format": "movielens_latest", "options": {"pth": "x"}},
     "data.options.path: Field required; "
     "data.options.pth: Extra inputs are not permitted"),
    ({"format": "tabular", "options": {"interactions": {
        "path": "r.csv", "columns": {"user_id": "u", "item_id": "i"},
        "delimiter": ";;"}}},
     "data.options.interactions.delimiter: String should have at most 1 "
     "character"),
    ({"format": "tabular", "options": {"interactions": {
        "path": "r.csv", "columns": {"user_id": "u", "itm": "i"}}}},
     "data.options.interactions: columns must map 'item_id' to a source "
     "column; data.options.interactions: columns: unknown field 'itm'; known "
     "fields: user_id, item_id, timestamp, rating, click, like, "
     "watch_fraction"),
])
def test_reader_options_are_checked_at_load_naming_the_key(data, message):
  with pytest.raises(C.ConfigError) as e:
    C.parse_config({"data": data}, source="x.yaml")
  assert str(e.value) == f"x.yaml: {message}"


def test_each_reader_options_model_matches_its_readers_constructor():
  import dataclasses  # pylint: disable=g-import-not-at-top
  import inspect  # pylint: disable=g-import-not-at-top
  from components import config as components_config  # pylint: disable=g-import-not-at-top
  from components import readers  # pylint: disable=g-import-not-at-top
  assert set(components_config.READER_OPTIONS) == set(readers.READERS)
  for name, reader in readers.READERS.items():
    model = components_config.READER_OPTIONS[name]
    parameters = inspect.signature(reader).parameters
    assert list(model.model_fields) == list(parameters), name
    for field, info in model.model_fields.items():
      default = parameters[field].default
      assert info.is_required() == (default is inspect.Parameter.empty), field
      if not info.is_required():
        assert info.default == default, (name, field)
  table_fields = [f.name for f in dataclasses.fields(readers.TableSpec)]
  assert list(components_config.TableOptions.model_fields) == table_fields


def test_a_typo_in_data_options_stops_mtrec_run_before_any_step(
    tmp_path, capsys):
  from pipeline import cli  # pylint: disable=g-import-not-at-top
  config = tmp_path / "typo.yaml"
  config.write_text("data:\n  format: synthetic\n  options:\n"
                    "    num_interactions: 100\n    num_interactionz: 5\n")
  runs = tmp_path / "runs"
  assert cli.main(["run", "--config", str(config), "--output-dir",
                   str(runs)]) == 2
  assert capsys.readouterr().err.strip() == (
      f"mtrec run: {config}: data.options.num_interactionz: Extra inputs are "
      "not permitted")
  assert not runs.exists()


def test_cli_help_and_version(capsys):
  from pipeline import cli  # pylint: disable=g-import-not-at-top
  assert cli.main(["--help"]) == 0
  out, err = capsys.readouterr()
  assert err == ""
  lines = out.splitlines()
  for name in cli.COMMANDS:  # one line per command
    assert sum(line.split()[:1] == [name] for line in lines) == 1, name
  assert cli.main(["--version"]) == 0
  assert capsys.readouterr().out == f"mtrec {cli.version()}\n"
  assert cli.version()[0].isdigit()  # installed: setup.py's version
  assert cli.main(["frobnicate"]) == 2
  assert "unknown command 'frobnicate'" in capsys.readouterr().err
