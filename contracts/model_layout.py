"""Where things are inside a Model artifact and inside a SavedModel.

The Trainer writes the SavedModel under `<Model artifact>/Format-Serving`
(TFX's name); the Evaluator, Pusher, infra validation, catalog refresh and
the server all find it and its extras through these names, so the layout is
stated once. `assets.extra/` is TF Serving's directory for files beside the
graph that the server itself reads (the warmup requests) and that mtrec's
own tools read (refresh and warm-start state).
"""

from __future__ import annotations

import os

# The exported SavedModel inside the Model artifact.
SERVING_MODEL_DIR = "Format-Serving"
SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
ASSETS_EXTRA = "assets.extra"
# TF Serving replays these PredictionLog records before serving a version.
WARMUP_FILE_NAME = "tf_serving_warmup_requests"
WARMUP_FILE = os.path.join(ASSETS_EXTRA, WARMUP_FILE_NAME)
# What `mtrec catalog refresh` rebuilds the model from (trainer/refresh.py).
REFRESH_STATE_DIR = os.path.join(ASSETS_EXTRA, "refresh")
# Variables and vocabularies a later run may warm-start from.
WARM_START_STATE_DIR = os.path.join(ASSETS_EXTRA, "warm_start")
# What the model is, for the tools that read it without TensorFlow (the
# Evaluator, the report, the CLI): its tasks and their serving outputs, and
# the fused ranking stage (candidates, fusion tasks and weights, the search
# that chose them). JSON:
#   {"tasks": [{"name", "kind", "label", "output"}],
#    "ranking": {"candidates": int, "fusion_tasks": [task names],
#                "fusion_weights": [float], "transforms": {task: text},
#                "search": {...} or null},
#    "signatures": [names]}
MODEL_CARD_FILE = os.path.join(ASSETS_EXTRA, "mtrec_model.json")


def saved_model_dir(model_uri: str) -> str:
  """The SavedModel directory of a Model artifact."""
  return os.path.join(model_uri, SERVING_MODEL_DIR)


# A distilled model's artifact also holds the same student trained without
# distillation (trainer.distillation.compare_undistilled), for the report.
UNDISTILLED_MODEL_DIR = "Comparison-undistilled"


def undistilled_model_dir(model_uri: str) -> str:
  """The undistilled student's SavedModel directory in a Model artifact."""
  return os.path.join(model_uri, UNDISTILLED_MODEL_DIR)


# A teacher of several members (trainer.members > 1): the first is the
# artifact's SavedModel, member j (j >= 1) a SavedModel of its own beside it.
MEMBER_MODEL_DIR = "Member-{}"


def member_model_dir(model_uri: str, member: int) -> str:
  """Member `member`'s SavedModel directory in a Model artifact (>= 1)."""
  return os.path.join(model_uri, MEMBER_MODEL_DIR.format(member))


def member_dirs(saved_model: str) -> list[str]:
  """Every member's SavedModel of the artifact whose SavedModel directory
  is `saved_model`, that one first (just [saved_model] for one model)."""
  model_uri = os.path.dirname(os.path.abspath(saved_model))
  out = [saved_model]
  if os.path.basename(os.path.abspath(saved_model)) != SERVING_MODEL_DIR:
    return out  # a SavedModel outside an artifact's layout
  member = 1
  while is_saved_model(member_model_dir(model_uri, member)):
    out.append(member_model_dir(model_uri, member))
    member += 1
  return out


def warmup_path(saved_model: str) -> str:
  """The warmup records file of a SavedModel directory."""
  return os.path.join(saved_model, WARMUP_FILE)


def model_card_path(saved_model: str) -> str:
  """The model card (MODEL_CARD_FILE) of a SavedModel directory."""
  return os.path.join(saved_model, MODEL_CARD_FILE)


def is_saved_model(directory: str) -> bool:
  """A complete SavedModel: tf.saved_model.save writes saved_model.pb last."""
  return any(os.path.exists(os.path.join(directory, f))
             for f in SAVED_MODEL_FILES)
