"""Config loading: typed, validated, offending key named."""

import os

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
