"""The Pusher step: a blessed model into <serving_root>/<model>/<version>/."""

from __future__ import annotations

from typing import Mapping

from components import pusher
from contracts import model_layout


def run(model_name: str, serving_root: str, run_id: str,
        u: Mapping[str, str]) -> str:
  s = pusher.run_pusher(u["Trainer/model"],
                        model_layout.saved_model_dir(u["Trainer/model"]),
                        u["Evaluator/blessing"], serving_root, model_name,
                        u["Pusher/pushed_model"], run_id)
  return (f"pushed version {s['version']} to {s['destination']}"
          if s["pushed"] else f"not pushed: {s['reason']}")
