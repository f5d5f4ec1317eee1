"""Hyperparameter search for the trainer section, on the validation split.

A search space (YAML, `SearchSpace`) names trainer settings by path
(`embedding_dim`, `learning_rate`, `text_adapter.id_dropout`,
`tasks.rating.weight`, ...) and a range or list for each. Every trial
trains the Trainer step as the pipeline does, on the train split, and is
scored by the served order's `objective` on ExampleGen's validation split
(the fusion search's figure with its chosen weights: each validation user
ranked as of their first validation event, from their train history), so
the eval split stays the Evaluator's alone.

Two ways to run the same space:
- `mtrec tune --config C --space S`: ExampleGen and Transform once, then
  the trials one after another here (seeded random search), a table of
  them and the best settings.
- `mtrec tune ... --katib-experiment FILE`: a Katib Experiment (Kubeflow's
  tuner) whose trials run `python -m pipeline.tuning` on a prepared run's
  artifacts and print `objective=value` for Katib's stdout collector.

Written by hand because Katib needs a cluster; the local search and the
manifest read one space, so what runs here is what Katib would run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from typing import Any, Literal, Mapping, Optional, Union

import numpy as np
import pydantic
import yaml

from contracts.config import StrictConfig as _Strict

KATIB_VERSION = "kubeflow.org/v1beta1"
OBJECTIVE_PATTERN = r"^(recall|ndcg|liked_recall|graded_ndcg)_at_[1-9][0-9]*$"


class Parameter(_Strict):
  """One setting's range (int, double: [min, max]) or list (categorical)."""

  type: Literal["int", "double", "categorical"]
  min: Optional[float] = None
  max: Optional[float] = None
  log: bool = False  # sample uniformly in log space (min > 0)
  values: Optional[list[Union[int, float, str]]] = None

  @pydantic.model_validator(mode="after")
  def _check(self) -> "Parameter":
    if self.type == "categorical":
      if not self.values:
        raise ValueError("values: a categorical parameter needs a list")
      return self
    if self.min is None or self.max is None or not self.min < self.max:
      raise ValueError(f"min, max: a {self.type} parameter needs min < max")
    if self.log and self.min <= 0:
      raise ValueError("log: needs min > 0")
    return self

  def sample(self, rng: np.random.Generator) -> Union[int, float, str]:
    if self.type == "categorical":
      return self.values[int(rng.integers(len(self.values)))]
    lo, hi = float(self.min), float(self.max)
    if self.log:
      value = math.exp(rng.uniform(math.log(lo), math.log(hi)))
    else:
      value = rng.uniform(lo, hi)
    if self.type == "int":
      return int(min(hi, max(lo, round(value))))
    return float(f"{value:.4g}")


class SearchSpace(_Strict):
  objective: str = pydantic.Field("graded_ndcg_at_20",
                                  pattern=OBJECTIVE_PATTERN)
  max_trials: int = pydantic.Field(8, gt=0)
  parallel_trials: int = pydantic.Field(1, gt=0)  # Katib's
  seed: int = 1
  # Path in the trainer section -> its range.
  parameters: dict[str, Parameter]

  @pydantic.model_validator(mode="after")
  def _paths_exist(self) -> "SearchSpace":
    from trainer.config import TrainerConfig  # pylint: disable=g-import-not-at-top
    base = TrainerConfig().model_dump(mode="json")
    for path, parameter in self.parameters.items():
      value = (parameter.values[0] if parameter.type == "categorical"
               else parameter.min)
      try:
        TrainerConfig.model_validate(apply(base, {path: value}))
      except (KeyError, ValueError) as e:
        raise ValueError(f"parameters.{path}: {e}") from None
    return self


def load_space(path: str) -> SearchSpace:
  with open(path) as f:
    raw = yaml.safe_load(f)
  try:
    return SearchSpace.model_validate(raw)
  except pydantic.ValidationError as e:
    from contracts.config import describe_errors  # pylint: disable=g-import-not-at-top
    raise ValueError(f"{path}: {describe_errors(e)}") from None


def apply(trainer: Mapping[str, Any], settings: Mapping[str, Any]
          ) -> dict[str, Any]:
  """The trainer section (JSON form) with each path set to its value.

  `tasks.<name>.<field>` addresses the task of that name.
  """
  out = json.loads(json.dumps(trainer))
  for path, value in settings.items():
    parts = path.split(".")
    node: Any = out
    for n, part in enumerate(parts[:-1]):
      if part == "tasks" and n == 0:
        tasks = {t["name"]: t for t in node["tasks"]}
        name = parts[n + 1]
        if name not in tasks:
          raise KeyError(f"no task named {name!r}; tasks: {sorted(tasks)}")
        node = tasks[name]
        parts = parts[:n + 1] + parts[n + 2:]
        break
      if not isinstance(node.get(part), dict):
        raise KeyError(f"{part!r} is not a section of the trainer's")
      node = node[part]
    leaf = parts[-1]
    if leaf not in node:
      raise KeyError(f"{leaf!r} is not a trainer setting")
    node[leaf] = value
  return out


def lookup(trainer: Mapping[str, Any], path: str) -> Any:
  """The value at a path of the trainer section (JSON form)."""
  node: Any = trainer
  parts = path.split(".")
  if parts[0] == "tasks":
    node = {t["name"]: t for t in trainer["tasks"]}[parts[1]]
    parts = parts[2:]
  for part in parts:
    node = node[part]
  return node


def trials(space: SearchSpace) -> list[dict[str, Any]]:
  """The local search's settings, trial by trial (seeded random search)."""
  rng = np.random.default_rng(space.seed)
  return [{path: p.sample(rng) for path, p in space.parameters.items()}
          for _ in range(space.max_trials)]


def _require_validation(config: Any) -> None:
  if not config.example_gen.validation_fraction:
    raise ValueError(
        "mtrec tune scores trials on the validation split: set "
        "example_gen.validation_fraction > 0 in the config")
  if not (config.serving.ranking.search.enabled and
          config.trainer.tasks_of_kind("retrieval") and
          len(config.trainer.tasks) > 1):
    raise ValueError(
        "mtrec tune scores the served order through the fusion search: the "
        "config needs a retrieval task, a ranking task and "
        "serving.ranking.search.enabled")


def prepare(config: Any, work_dir: str, log=print) -> Any:
  """ExampleGen, Transform (and the TextEmbedder) once; their URIs."""
  import datetime  # pylint: disable=g-import-not-at-top
  from pipeline.steps import ArtifactUris  # pylint: disable=g-import-not-at-top
  from pipeline.steps import example_gen  # pylint: disable=g-import-not-at-top
  from pipeline.steps import transform  # pylint: disable=g-import-not-at-top
  uris = ArtifactUris(**{f: os.path.join(work_dir, f) for f in (
      "examples", "catalog", "quarantine", "transform_graph",
      "transformed_examples")})
  if not os.path.exists(uris.transformed_examples):
    log(example_gen.run(config.data, config.example_gen, config.beam_args,
                        "tune", uris,
                        datetime.datetime.now(datetime.timezone.utc)))
    log(transform.run(config.transform, config.beam_args, "tune", uris))
  if config.text_embedder.enabled:
    import dataclasses  # pylint: disable=g-import-not-at-top
    from pipeline.steps import text_embedder  # pylint: disable=g-import-not-at-top
    uris = dataclasses.replace(uris, item_features=os.path.join(
        work_dir, "item_features"))
    if not os.path.exists(uris.item_features):
      log(text_embedder.run(config.text_embedder,
                            config.text_embedding_cache_dir(),
                            config.beam_args, "tune", uris))
  return uris


def run_trial(trainer_section: Mapping[str, Any], serving_section: Mapping[
    str, Any], objective: str, uris: Any, model_dir: str,
              log=lambda m: None) -> dict[str, Any]:
  """Trains one trial as the Trainer step does; its validation figures."""
  import dataclasses  # pylint: disable=g-import-not-at-top
  from contracts import artifacts  # pylint: disable=g-import-not-at-top
  from pipeline.steps import trainer as trainer_step  # pylint: disable=g-import-not-at-top
  from trainer.config import ServingConfig  # pylint: disable=g-import-not-at-top
  from trainer.config import TrainerConfig  # pylint: disable=g-import-not-at-top
  serving = ServingConfig.model_validate(serving_section)
  serving = serving.model_copy(update={"ranking": serving.ranking.model_copy(
      update={"search": serving.ranking.search.model_copy(
          update={"objective": objective, "enabled": True})})})
  start = time.time()
  trainer_step.run(TrainerConfig.model_validate(trainer_section), serving,
                   "mtrec", "tune", dataclasses.replace(uris, model=model_dir),
                   with_item_text=uris.item_features is not None, log=log)
  search = artifacts.read_metadata(model_dir)["summary"]["fusion_search"]
  if search.get("source") != "validation split":
    raise ValueError(f"{uris.examples} has no validation split")
  return {objective: search["chosen_objective"],
          f"retrieval_order_{objective}": search["retrieval_only_objective"],
          "validation_users": search["users"],
          "seconds": round(time.time() - start, 1)}


def search_locally(config: Any, space: SearchSpace, work_dir: str,
                   log=print) -> dict[str, Any]:
  """Every trial of `trials(space)`; the best by the objective."""
  _require_validation(config)
  uris = prepare(config, work_dir, log)
  base = config.trainer.model_dump(mode="json")
  serving = config.serving.model_dump(mode="json")
  results = []
  # The config's own values first: what a chosen setting has to beat.
  as_configured = {path: lookup(base, path) for path in space.parameters}
  for n, settings in [("config", as_configured), *enumerate(trials(space))]:
    figures = run_trial(apply(base, settings), serving, space.objective, uris,
                        os.path.join(work_dir, "trials", str(n)))
    results.append({"trial": n, "settings": settings, **figures})
    log(f"trial {n}: {settings} -> {space.objective} "
        f"{figures[space.objective]:.4f} ({figures['seconds']}s)")
    shutil.rmtree(os.path.join(work_dir, "trials", str(n)),
                  ignore_errors=True)
  best = max(results, key=lambda t: t[space.objective])
  return {"objective": space.objective, "trials": results[1:],
          "config": results[0], "best": best,
          "space": space.model_dump(mode="json")}


def table(result: Mapping[str, Any]) -> str:
  objective = result["objective"]
  paths = list(result["space"]["parameters"])
  lines = [f"| trial | {' | '.join(paths)} | {objective} | retrieval order "
           "| s |", "|" + "---|" * (len(paths) + 4)]
  for t in sorted([result["config"], *result["trials"]],
                  key=lambda t: -t[objective]):
    lines.append(
        f"| {t['trial']} | " + " | ".join(str(t["settings"][p]) for p in paths)
        + f" | {t[objective]:.4f} | {t['retrieval_order_' + objective]:.4f} "
        f"| {t['seconds']} |")
  return "\n".join(lines)


def _katib_name(path: str) -> str:
  words = path.replace("_", ".").split(".")
  return words[0] + "".join(w.capitalize() for w in words[1:])


def katib_experiment(config: Any, space: SearchSpace, artifacts_dir: str,
                     image: str, name: str, namespace: str) -> dict[str, Any]:
  """The Katib Experiment running `space`'s trials on prepared artifacts.

  Args:
    artifacts_dir: where `prepare` put (or a pipeline run's steps wrote)
      examples, catalog, transform_graph and transformed_examples, on
      storage the trial pods see.
  """
  _require_validation(config)
  names = {path: _katib_name(path) for path in space.parameters}
  parameters = []
  for path, p in space.parameters.items():
    if p.type == "categorical":
      kind = "categorical"
      feasible: dict[str, Any] = {"list": [str(v) for v in p.values]}
    else:
      kind = p.type
      feasible = {"min": str(p.min if p.type == "double" else int(p.min)),
                  "max": str(p.max if p.type == "double" else int(p.max))}
      if p.log:
        feasible["distribution"] = "logUniform"
    parameters.append({"name": names[path], "parameterType": kind,
                       "feasibleSpace": feasible})
  command = ["python", "-m", "pipeline.tuning", "--artifacts", artifacts_dir,
             "--trainer-json",
             json.dumps(config.trainer.model_dump(mode="json")),
             "--serving-json",
             json.dumps(config.serving.model_dump(mode="json")),
             "--objective", space.objective]
  for path in space.parameters:
    command += ["--set", f"{path}=${{trialParameters.{names[path]}}}"]
  return {
      "apiVersion": KATIB_VERSION, "kind": "Experiment",
      "metadata": {"name": name, "namespace": namespace},
      "spec": {
          "objective": {"type": "maximize",
                        "objectiveMetricName": space.objective,
                        "additionalMetricNames": [
                            f"retrieval_order_{space.objective}"]},
          "algorithm": {"algorithmName": "random",
                        "algorithmSettings": [{"name": "random_state",
                                               "value": str(space.seed)}]},
          "maxTrialCount": space.max_trials,
          "parallelTrialCount": space.parallel_trials,
          "maxFailedTrialCount": max(1, space.max_trials // 4),
          "parameters": parameters,
          "metricsCollectorSpec": {"collector": {"kind": "StdOut"}},
          "trialTemplate": {
              "primaryContainerName": "training",
              "trialParameters": [
                  {"name": names[path], "reference": names[path],
                   "description": f"trainer.{path}"}
                  for path in space.parameters],
              "trialSpec": {
                  "apiVersion": "batch/v1", "kind": "Job",
                  "spec": {"template": {"spec": {
                      "restartPolicy": "Never",
                      "containers": [{
                          "name": "training", "image": image,
                          "command": command,
                          "env": [{"name": "TF_USE_LEGACY_KERAS",
                                   "value": "1"}]}]}}}},
          },
      },
  }


def _value(text: str) -> Union[int, float, str]:
  for cast in (int, float):
    try:
      return cast(text)
    except ValueError:
      pass
  return text


def trial_main(argv: Optional[list[str]] = None) -> int:
  """One Katib trial: prints `objective=value` lines for its collector."""
  parser = argparse.ArgumentParser(
      prog="python -m pipeline.tuning",
      description="One hyperparameter trial on prepared artifacts.")
  parser.add_argument("--artifacts", required=True)
  parser.add_argument("--trainer-json", required=True)
  parser.add_argument("--serving-json", required=True)
  parser.add_argument("--objective", required=True)
  parser.add_argument("--set", action="append", default=[],
                      help="PATH=VALUE in the trainer section")
  parser.add_argument("--model-dir", default=None)
  args = parser.parse_args(argv)
  settings = dict(s.split("=", 1) for s in args.set)
  from pipeline.steps import ArtifactUris  # pylint: disable=g-import-not-at-top
  d = args.artifacts
  item_features = os.path.join(d, "item_features")
  uris = ArtifactUris(
      examples=os.path.join(d, "examples"), catalog=os.path.join(d, "catalog"),
      transform_graph=os.path.join(d, "transform_graph"),
      transformed_examples=os.path.join(d, "transformed_examples"),
      item_features=item_features if os.path.exists(item_features) else None)
  import tempfile  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as tmp:
    figures = run_trial(
        apply(json.loads(args.trainer_json),
              {k: _value(v) for k, v in settings.items()}),
        json.loads(args.serving_json), args.objective, uris,
        args.model_dir or os.path.join(tmp, "model"), log=print)
  for key, value in figures.items():
    print(f"{key}={value}", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(trial_main())
