"""The pipeline's steps: each wires one component to the config and URIs.

A step takes the validated config, the run id and the URIs of its inputs and
outputs, calls its component, and returns a one-paragraph summary for people.
Any orchestrator (the local runner, a KFP component) calls these same
functions, so the DAG's behaviour is defined once.
"""

from __future__ import annotations

import datetime
import os
from typing import Callable, Mapping, Optional

from contracts import artifacts
from components import parsing
from pipeline.config import PipelineConfig

# Trainer's name for the exported SavedModel inside the Model artifact.
SERVING_MODEL_DIR = "Format-Serving"

# (component, output) of every artifact the pipeline produces, in DAG order.
OUTPUTS = (
    ("ExampleGen", "examples"), ("ExampleGen", "catalog"),
    ("ExampleGen", "quarantine"), ("TextEmbedder", "item_features"),
    ("Transform", "transform_graph"),
    ("Transform", "transformed_examples"), ("Trainer", "model"),
    ("Evaluator", "evaluation"), ("Evaluator", "blessing"),
    ("Pusher", "pushed_model"),
)
# The TextEmbedder runs only when the config enables it (text_embedder).
STEP_NAMES = ("ExampleGen", "Transform", "Trainer", "Evaluator", "Pusher")


def output_uris(run_dir: str) -> dict[str, str]:
  """`Component/output` -> `<run_dir>/<Component>/<output>` for every output."""
  return {f"{c}/{o}": os.path.join(run_dir, c, o) for c, o in OUTPUTS}


def validation_rules(config: PipelineConfig,
                     started: datetime.datetime) -> parsing.ValidationRules:
  """Row rules; an unset timestamp_max means "not after the run started"."""
  eg = config.example_gen

  def seconds(dt: datetime.datetime) -> int:
    if dt.tzinfo is None:
      dt = dt.replace(tzinfo=datetime.timezone.utc)
    return int(dt.timestamp())

  return parsing.ValidationRules(eg.rating_min, eg.rating_max,
                                 seconds(eg.timestamp_min),
                                 seconds(eg.timestamp_max or started))


def example_gen_step(config: PipelineConfig, run_id: str, u: Mapping[str, str],
                     started: datetime.datetime) -> str:
  from components import example_gen  # pylint: disable=g-import-not-at-top
  from components.readers import build_reader  # pylint: disable=g-import-not-at-top
  eg = config.example_gen
  c = example_gen.run_example_gen(
      build_reader(config.data.format, **config.data.options),
      validation_rules(config, started), u["ExampleGen/examples"],
      u["ExampleGen/catalog"], u["ExampleGen/quarantine"], run_id,
      split=eg.split, eval_fraction=eg.eval_fraction, seed=eg.seed,
      max_quarantine_fraction=eg.max_quarantine_fraction,
      beam_args=config.beam_args,
      parameters={"data": config.data.model_dump(mode="json")})
  return (f"{c['interactions_in']:,} rows in: {c['interactions_train']:,} "
          f"train, {c['interactions_eval']:,} eval, "
          f"{c['interactions_quarantined']:,} quarantined, "
          f"{c['duplicates_dropped']:,} duplicates; "
          f"{c['items_written']:,} items, {c['users_written']:,} users")


def transform_step(config: PipelineConfig, run_id: str,
                   u: Mapping[str, str]) -> str:
  from components import transform  # pylint: disable=g-import-not-at-top
  transform.run_transform(
      u["ExampleGen/examples"], u["Transform/transform_graph"],
      u["Transform/transformed_examples"], run_id,
      like_threshold=config.transform.like_threshold,
      max_title_tokens=config.transform.max_title_tokens_vocab,
      beam_args=config.beam_args)
  sizes = artifacts.read_metadata(
      u["Transform/transform_graph"])["summary"]["vocabulary_sizes"]
  return "vocabularies: " + ", ".join(f"{k} {v:,}" for k, v in sizes.items())


def text_embedding_cache_dir(config: PipelineConfig,
                             item_features_uri: str) -> str:
  """The text-hash cache: the config's, else beside the step cache.

  <pipeline_root>/<run_id>/TextEmbedder/item_features ->
  <pipeline_root>/.cache/text_embeddings, so every run under a root (and
  `mtrec catalog refresh`) shares it.
  """
  if config.text_embedder.cache_dir:
    return config.text_embedder.cache_dir
  pipeline_root = os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(item_features_uri))))
  return os.path.join(pipeline_root, ".cache", "text_embeddings")


def text_embedder_step(config: PipelineConfig, run_id: str,
                       u: Mapping[str, str]) -> str:
  from components import text_embedder  # pylint: disable=g-import-not-at-top
  te = config.text_embedder
  s = text_embedder.run_text_embedder(
      u["ExampleGen/catalog"], u["TextEmbedder/item_features"], run_id,
      model=te.model, fields=te.fields, max_tags=te.max_tags,
      batch_size=te.batch_size,
      cache_dir=text_embedding_cache_dir(config,
                                         u["TextEmbedder/item_features"]),
      beam_args=config.beam_args)
  rate = (f", {s['items_per_second']:,.0f} items/s"
          if s["items_per_second"] else "")
  return (f"{s['items']:,} items: {s['embedded']:,} embedded{rate}, "
          f"{s['cached']:,} from the cache, {s['no_text']:,} without text "
          f"(zero vector); width {s['dimension']}")


def trainer_uris(transform_graph: str, transformed_examples: str,
                 examples: str, catalog: str, model: str,
                 item_features: Optional[str] = None) -> dict[str, str]:
  """The artifact URIs trainer_step reads, by `<Component>/<output>`."""
  u = {"Transform/transform_graph": transform_graph,
       "Transform/transformed_examples": transformed_examples,
       "ExampleGen/examples": examples, "ExampleGen/catalog": catalog,
       "Trainer/model": model}
  if item_features is not None:
    u["TextEmbedder/item_features"] = item_features
  return u


def trainer_step(config: PipelineConfig, run_id: str, u: Mapping[str, str],
                 num_cpu_devices: int = 1,
                 log: Callable[[str], None] = print) -> str:
  from trainer import run as trainer_run  # pylint: disable=g-import-not-at-top
  # trainer.warm_start: from the version TF Serving would serve now.
  warm_start_from = (serving_model_dir(config.serving_root, config.model_name)
                     if config.trainer.warm_start else None)
  s = trainer_run.run_trainer(
      u["Transform/transform_graph"], u["Transform/transformed_examples"],
      u["ExampleGen/examples"], u["ExampleGen/catalog"], u["Trainer/model"],
      run_id, config.trainer, config.model_name, config.serving.top_k,
      max_k=config.serving.max_k, num_cpu_devices=num_cpu_devices, log=log,
      warm_start_from=warm_start_from,
      item_features_uri=(u["TextEmbedder/item_features"]
                         if config.text_embedder.enabled else None))
  return (f"{s['epochs']} epochs on {s['strategy']}, "
          f"{s['examples_per_second']:,.0f} examples/s")


def model_dir(u: Mapping[str, str]) -> str:
  return os.path.join(u["Trainer/model"], SERVING_MODEL_DIR)


def serving_model_dir(serving_root: str, model_name: str) -> Optional[str]:
  """The version TF Serving serves now, if any.

  The one models.config pins (the Pusher pins each push, `mtrec rollback`
  an older one), else the highest, as TF Serving's default policy does.
  """
  from components import pusher  # pylint: disable=g-import-not-at-top
  model_root = os.path.join(serving_root, model_name)
  versions = pusher.existing_versions(model_root)
  if not versions:
    return None
  pinned = pusher.pinned_version(serving_root, model_name)
  version = pinned if pinned in versions else versions[-1]
  return os.path.join(model_root, str(version))


def evaluator_step(config: PipelineConfig, run_id: str, u: Mapping[str, str],
                   serving_root: Optional[str] = None) -> str:
  from components import evaluator  # pylint: disable=g-import-not-at-top
  serving_root = os.path.abspath(serving_root or config.serving_root)
  # <pipeline_root>/<run_id>/Evaluator/evaluation
  pipeline_root = os.path.dirname(os.path.dirname(os.path.dirname(
      u["Evaluator/evaluation"])))
  b = evaluator.run_evaluator(
      u["Trainer/model"], model_dir(u), u["ExampleGen/examples"],
      u["ExampleGen/catalog"], u["Transform/transform_graph"],
      u["Evaluator/evaluation"], u["Evaluator/blessing"], run_id,
      config.evaluator, serving_model_dir(serving_root, config.model_name),
      pipeline_root, config.example_gen.seed, config.beam_args)
  m = artifacts.read_metadata(u["Evaluator/evaluation"])["summary"]
  lines = [b["verdict"] + "".join(f" ({n})" for n in b["notes"])]
  for c in b["checks"]:
    value = f"{c['value']:.4f}" if isinstance(c["value"], float) else str(
        c["value"])
    bound = f"{c['bound']:.4f}" if isinstance(c["bound"], float) else str(
        c["bound"])
    lines.append(f"{'ok  ' if c['passed'] else 'FAIL'} {c['metric']} "
                 f"{value} {c['op']} {bound} ({c['check']})")
  cand = m["candidate"]
  pop = m["baselines"].get("popularity", {})
  serving = m["baselines"].get("serving")
  nan = float("nan")
  for k in config.evaluator.ks:
    if f"recall_at_{k}" in cand:
      lines.append(
          f"     recall@{k} {cand[f'recall_at_{k}']:.4f} (popularity "
          f"{pop.get(f'recall_at_{k}', nan):.4f}"
          + (f", serving {serving.get(f'recall_at_{k}', nan):.4f}"
             if serving else "") + f"), ndcg@{k} "
          f"{cand[f'ndcg_at_{k}']:.4f} (popularity "
          f"{pop.get(f'ndcg_at_{k}', nan):.4f})")
  lines.append(f"     rmse {cand.get('rmse', nan):.4f}, "
               f"auc {cand.get('auc', nan):.4f}; report: "
               f"{os.path.join(u['Evaluator/evaluation'], 'report.html')}")
  return "\n      ".join(lines)


def pusher_step(config: PipelineConfig, run_id: str, u: Mapping[str, str],
                serving_root: str) -> str:
  from components import pusher  # pylint: disable=g-import-not-at-top
  s = pusher.run_pusher(u["Trainer/model"], model_dir(u),
                        u["Evaluator/blessing"], serving_root,
                        config.model_name, u["Pusher/pushed_model"], run_id)
  return (f"pushed version {s['version']} to {s['destination']}"
          if s["pushed"] else f"not pushed: {s['reason']}")
