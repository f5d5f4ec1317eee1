"""What every part of the suite shares: configs, the pipeline's own steps,
reading a split back as arrays, and the machine description.

Every model of a protocol is trained and measured on the split ExampleGen
wrote, read back from its TFRecords here, so "the same split" is true by
construction rather than by re-implementing the split rule.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import shutil
import time
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
import yaml

from pipeline import steps

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
CONFIGS = os.path.join(ROOT, "configs")
SHARED_DATA = os.path.normpath(os.path.join(ROOT, "..", "shared", "data"))
ML_LATEST_SMALL = os.path.join(SHARED_DATA, "ml-latest-small")


def load_config(path: str, data: Optional[Mapping[str, Any]] = None,
                trainer: Optional[Mapping[str, Any]] = None,
                **top: Any):
  """A pipeline config from YAML with the data section and fields replaced.

  `trainer` and any mapping in `top` update that section field by field
  (e.g. example_gen={"split": "random"} keeps its rating range); other
  values replace the field. Overrides go through the YAML mapping and the
  same validation as a file (pipeline.config.parse_config), so a bad
  override fails like a bad file.
  """
  from pipeline import config as config_lib  # pylint: disable=g-import-not-at-top
  with open(path) as f:
    raw = yaml.safe_load(f)
  if data is not None:
    raw["data"] = dict(data)
  if trainer:
    raw["trainer"] = dict(raw.get("trainer") or {}, **trainer)
  for key, value in top.items():
    if isinstance(value, Mapping) and isinstance(raw.get(key), dict):
      value = dict(raw[key], **value)
    raw[key] = value
  return config_lib.parse_config(raw, source=path,
                                 base_dir=os.path.dirname(
                                     os.path.abspath(path)))


def run_trainer(config, run_id: str, uris: steps.ArtifactUris,
                log: Callable[[str], None] = lambda m: None) -> str:
  """The pipeline's Trainer step on `config`, as `mtrec run` calls it.

  trainer.warm_start starts from the version served now under
  config.serving_root, as in the pipeline.
  """
  # pylint: disable=g-import-not-at-top
  from contracts import serving_layout
  from pipeline.steps import trainer as trainer_step
  # pylint: enable=g-import-not-at-top
  warm_start_from = (serving_layout.served_model_dir(config.serving_root,
                                                     config.model_name)
                     if config.trainer.warm_start else None)
  return trainer_step.run(config.trainer, config.serving, config.model_name,
                          run_id, uris,
                          with_item_text=config.text_embedder.enabled,
                          warm_start_from=warm_start_from, log=log)


def train_with_seed(config, uris: steps.ArtifactUris, model_uri: str,
                    seed: int, trainer=None) -> float:
  """The Trainer step on `config` with trainer.seed = `seed` (and another
  config's trainer section `trainer` in place of its own, if given), the
  model written to `model_uri`; returns the wall seconds."""
  trainer = trainer or config.trainer
  seeded = config.model_copy(update={
      "trainer": trainer.model_copy(update={"seed": seed})})
  start = time.time()
  run_trainer(seeded, "bench", dataclasses.replace(uris, model=model_uri))
  return time.time() - start


def run_steps(config, run_dir: str, names=("ExampleGen", "Transform"),
              log: Callable[[str], None] = lambda m: None,
              fresh: bool = True) -> dict[str, Any]:
  """Runs pipeline steps in this process through pipeline/steps/.

  The same functions `mtrec run` and the KFP components call, without the
  per-step subprocess (whose interpreter and TensorFlow start-up would
  otherwise dominate a small dataset's timings). `run_dir` stands for
  `<pipeline_root>/<run_id>`: its parent holds the text-hash cache (unless
  the config names one) and is the Evaluator's pipeline root.

  Returns:
    {"uris": the run's steps.ArtifactUris, "seconds": {step: wall seconds}}.
  """
  # pylint: disable=g-import-not-at-top
  from pipeline.steps import evaluator as evaluator_step
  from pipeline.steps import example_gen as example_gen_step
  from pipeline.steps import text_embedder as text_embedder_step
  from pipeline.steps import transform as transform_step
  # pylint: enable=g-import-not-at-top
  if fresh:  # artifacts are write-once: a rerun starts from an empty run dir
    shutil.rmtree(run_dir, ignore_errors=True)
  uris = steps.output_uris(run_dir)
  # The optional TextEmbedder step runs only when the config enables it, as
  # in the pipeline; without it the Trainer must not look for its output.
  text = getattr(config, "text_embedder", None)
  if text is not None and text.enabled and "Transform" in names:
    names = tuple(n for n in names if n != "Transform")
    i = names.index("ExampleGen") + 1 if "ExampleGen" in names else 0
    names = names[:i] + ("TextEmbedder", "Transform") + names[i:]
  elif not os.path.exists(os.path.join(uris.item_features, "metadata.json")):
    uris = dataclasses.replace(uris, item_features=None)
  # The benchmarks measure models, not data: without the ExampleValidator
  # the Evaluator judges no data anomalies.
  if "ExampleValidator" not in names:
    uris = dataclasses.replace(uris, statistics=None, anomalies=None)
  started = datetime.datetime.now(datetime.timezone.utc)
  seconds = {}
  for name in names:
    start = time.time()
    if name == "ExampleGen":
      summary = example_gen_step.run(config.data, config.example_gen,
                                     config.beam_args, "bench", uris, started)
    elif name == "TextEmbedder":
      # <root>/<run>/TextEmbedder/item_features -> <root>/.cache/...
      root = os.path.dirname(os.path.dirname(os.path.dirname(
          os.path.abspath(uris.item_features))))
      cache_dir = config.model_copy(
          update={"pipeline_root": root}).text_embedding_cache_dir()
      summary = text_embedder_step.run(config.text_embedder, cache_dir,
                                       config.beam_args, "bench", uris)
    elif name == "Transform":
      summary = transform_step.run(config.transform, config.beam_args,
                                   "bench", uris)
    elif name == "Trainer":
      summary = run_trainer(config, "bench", uris, log=log)
    elif name == "Evaluator":
      # <root>/<run>/Evaluator/evaluation -> <root>, for the history page.
      root = os.path.dirname(os.path.dirname(os.path.dirname(
          uris.evaluation)))
      summary = evaluator_step.run(
          config.evaluator, config.model_name,
          os.path.join(run_dir, "serving"), config.beam_args, "bench", uris,
          pipeline_root=root)
    else:
      raise ValueError(f"unknown step {name}")
    seconds[name] = time.time() - start
    log(f"  {name}: {seconds[name]:.1f}s — {summary.splitlines()[0]}")
  return {"uris": uris, "seconds": seconds}


def read_split(examples_uri: str, split: str) -> dict[str, Any]:
  """One ExampleGen split as numpy columns (user, item, rating, timestamp)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from contracts import artifacts
  from contracts import records as r  # pylint: disable=g-import-not-at-top
  spec = {r.USER_ID: tf.io.FixedLenFeature([], tf.string),
          r.ITEM_ID: tf.io.FixedLenFeature([], tf.string),
          r.TIMESTAMP: tf.io.FixedLenFeature([], tf.int64),
          r.RATING: tf.io.FixedLenFeature([], tf.float32, default_value=-1),
          r.CLICK: tf.io.FixedLenFeature([], tf.int64, default_value=1)}
  files = artifacts.split_files(examples_uri, split)
  cols = {k: [] for k in spec}
  ds = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(8192)
  for b in ds.map(lambda x: tf.io.parse_example(x, spec)):
    for k, v in b.items():
      cols[k].append(v.numpy())
  out = {k: np.concatenate(v) if v else np.zeros(0) for k, v in cols.items()}
  for k in (r.USER_ID, r.ITEM_ID):
    out[k] = np.array([x.decode() for x in out[k]], dtype=object)
  return {"user": out[r.USER_ID], "item": out[r.ITEM_ID],
          "rating": out[r.RATING].astype(np.float64),
          "timestamp": out[r.TIMESTAMP], "click": out[r.CLICK]}


def over_seeds(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
  """One model's figures from runs with different seeds, as one row.

  Each number becomes its mean over the runs, with the standard deviation
  under "sd" (population: the spread of these runs, not an estimate of
  the mean's error) and the runs themselves under "per_seed". Anything
  else (a baseline's chosen setting) is taken from the first run.
  """
  out: dict[str, Any] = {}
  sd: dict[str, float] = {}
  for key, value in runs[0].items():
    if isinstance(value, (int, float)) and not isinstance(value, bool):
      values = [float(run[key]) for run in runs]
      out[key], sd[key] = float(np.mean(values)), float(np.std(values))
    else:
      out[key] = value
  out.update(sd=sd, per_seed=[dict(run) for run in runs])
  return out


def beyond_spread(a: Mapping[str, Any], b: Mapping[str, Any], metric: str,
                  lower_is_better: bool = False) -> bool:
  """Whether row `a` beats row `b` on `metric` by more than the two rows'
  spreads together (over_seeds' "sd"; a deterministic model has none)."""
  margin = a[metric] - b[metric]
  if lower_is_better:
    margin = -margin
  spread = sum(row.get("sd", {}).get(metric, 0.0) for row in (a, b))
  return margin > spread


def machine() -> dict[str, Any]:
  """Where the figures were measured, for the report's header."""
  info = {"platform": platform.platform(), "python": platform.python_version(),
          "cpus": os.cpu_count(), "machine": platform.machine()}
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          info["cpu_model"] = line.split(":", 1)[1].strip()
          break
    with open("/proc/meminfo") as f:
      kb = int(f.readline().split()[1])
      info["memory_gib"] = round(kb / 2**20, 1)
  except OSError:
    pass
  try:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    info["tensorflow"] = tf.__version__
    info["gpus"] = len(tf.config.list_physical_devices("GPU"))
  except ImportError:
    pass
  try:
    import apache_beam  # pylint: disable=g-import-not-at-top
    info["apache_beam"] = apache_beam.__version__
  except ImportError:
    pass
  return info


def small_multitask_config(work_dir: str) -> str:
  """configs/demo.yaml on a few thousand synthetic rows (CI-sized)."""
  with open(os.path.join(CONFIGS, "demo.yaml")) as f:
    raw = yaml.safe_load(f)
  raw["data"]["options"] = {"num_interactions": 6000, "seed": 3,
                            "num_users": 200, "num_items": 300}
  raw["trainer"]["epochs"] = 1
  os.makedirs(work_dir, exist_ok=True)
  path = os.path.join(work_dir, "multitask_small.yaml")
  with open(path, "w") as f:
    yaml.safe_dump(raw, f)
  return path
