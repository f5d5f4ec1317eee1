"""The Evaluator step: metrics against baselines, thresholds, the blessing."""

from __future__ import annotations

import os
from typing import Optional, Sequence

from components import evaluator
from components.config import EvaluatorConfig
from contracts import artifacts
from contracts import evaluation_files
from contracts import model_layout
from contracts import serving_layout
from pipeline.steps import ArtifactUris


def run(config: EvaluatorConfig, model_name: str, serving_root: str,
        beam_args: Sequence[str], run_id: str, uris: ArtifactUris,
        pipeline_root: Optional[str] = None) -> str:
  """Evaluates the trained model; the regression baseline is the served one.

  Args:
    config: the evaluator section (its seed filled in by the pipeline).
    model_name: the served model, whose served version is the baseline.
    serving_root: where it is served from.
    beam_args: Beam options.
    run_id: the pipeline run.
    uris: the artifact URIs; it reads the model, examples, catalog,
      transform graph and (when set) the ExampleValidator's anomalies, and
      writes the evaluation and blessing.
    pipeline_root: where the local runner's run.json records live, for the
      history page; None (e.g. on Kubeflow) writes no history.
  """
  uris.require("Evaluator", "model", "examples", "catalog",
               "transform_graph", "evaluation", "blessing")
  serving_root = os.path.abspath(serving_root)
  b = evaluator.run_evaluator(
      uris.model, model_layout.saved_model_dir(uris.model), uris.examples,
      uris.catalog, uris.transform_graph, uris.evaluation, uris.blessing,
      run_id, config,
      serving_layout.served_model_dir(serving_root, model_name),
      pipeline_root, config.seed if config.seed is not None else 42,
      list(beam_args), uris.anomalies)
  m = artifacts.read_metadata(uris.evaluation)["summary"]
  lines = [b["verdict"] + "".join(f" ({n})" for n in b["notes"])]
  for c in b["checks"]:
    value = f"{c['value']:.4f}" if isinstance(c["value"], float) else str(
        c["value"])
    bound = f"{c['bound']:.4f}" if isinstance(c["bound"], float) else str(
        c["bound"])
    # The check's interval (components.confidence), when it has one.
    iv = c.get("interval")
    spread = f" [{iv['low']:.4f}, {iv['high']:.4f}]" if iv else ""
    lines.append(f"{'ok  ' if c['passed'] else 'FAIL'} {c['metric']} "
                 f"{value}{spread} {c['op']} {bound} ({c['check']})")
  cand = m["candidate"]
  pop = m["baselines"].get("popularity", {})
  serving = m["baselines"].get("serving")
  nan = float("nan")
  for k in config.ks:
    if f"recall_at_{k}" in cand:
      lines.append(
          f"     recall@{k} {cand[f'recall_at_{k}']:.4f} (popularity "
          f"{pop.get(f'recall_at_{k}', nan):.4f}"
          + (f", serving {serving.get(f'recall_at_{k}', nan):.4f}"
             if serving else "") + f"), ndcg@{k} "
          f"{cand[f'ndcg_at_{k}']:.4f} (popularity "
          f"{pop.get(f'ndcg_at_{k}', nan):.4f})")
  order = m["baselines"].get("candidate_retrieval_order")
  k = sorted(config.ks)[len(config.ks) // 2]
  if order:
    lines.append("     served (fused) vs retrieval order: " + ", ".join(
        f"{name}@{k} {cand.get(f'{name}_at_{k}', nan):.4f} vs "
        f"{order.get(f'{name}_at_{k}', nan):.4f}"
        for name in ("recall", "liked_recall", "graded_ndcg")))
  report = os.path.join(uris.evaluation, evaluation_files.REPORT_HTML)
  # Each task's headline metric (the older unprefixed aliases left out).
  heads = [f"{name} {value:.4f}" for name, value in sorted(cand.items())
           if name.endswith(("_auc", "_rmse")) and "_at_" not in name and
           isinstance(value, float)]
  lines.append(f"     {', '.join(heads) or 'no ranking task'}; "
               f"report: {report}")
  return "\n      ".join(lines)
