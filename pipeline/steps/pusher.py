"""The Pusher step: a blessed model into <serving_root>/<model>/<version>/."""

from __future__ import annotations

from components import pusher
from contracts import model_layout
from pipeline.steps import ArtifactUris


def run(model_name: str, serving_root: str, run_id: str,
        uris: ArtifactUris) -> str:
  uris.require("Pusher", "model", "blessing", "pushed_model")
  s = pusher.run_pusher(uris.model, model_layout.saved_model_dir(uris.model),
                        uris.blessing, serving_root, model_name,
                        uris.pushed_model, run_id)
  return (f"pushed version {s['version']} to {s['destination']}"
          if s["pushed"] else f"not pushed: {s['reason']}")
