"""pipeline.steps.ArtifactUris: the URIs every step's `run` takes."""

import dataclasses

import pytest

from pipeline import steps


def test_fields_are_the_pipelines_outputs_laid_out_by_component():
  # OUTPUTS lays out a run and keys the runner's URIs; ArtifactUris names
  # the same artifacts, so the two must not drift apart.
  assert [f.name for f in dataclasses.fields(steps.ArtifactUris)] == [
      o for _, o in steps.OUTPUTS]
  u = steps.output_uris("/runs/r1")
  assert u.model == "/runs/r1/Trainer/model"
  assert u.item_features == "/runs/r1/TextEmbedder/item_features"
  assert None not in dataclasses.astuple(u)


def test_from_keys_reads_the_runners_mapping_and_skips_other_outputs():
  u = steps.ArtifactUris.from_keys({"Trainer/model": "m",
                                    "Evaluator/blessing": "b",
                                    "Evaluator/report": "r"})
  assert u == steps.ArtifactUris(model="m", blessing="b")


def test_require_names_the_step_and_every_unset_field():
  u = steps.ArtifactUris(model="m")
  u.require("Pusher", "model")
  with pytest.raises(ValueError, match=r"the Pusher step needs "
                     r"ArtifactUris\.blessing, ArtifactUris\.pushed_model"):
    u.require("Pusher", "model", "blessing", "pushed_model")
  with pytest.raises(AttributeError):
    u.require("Pusher", "modle")
