"""Validation reports people read: HTML (self-contained), Markdown, history.

The HTML report has its charts inline as SVG (matplotlib), so it can be
mailed, attached to a KFP run or opened from a bucket with nothing else
beside it. It leads with the verdict and the checks, then compares the
candidate with its baselines, slices, calibration and training losses.
"""

from __future__ import annotations

import datetime
import io
import os
from typing import Any, Mapping, Optional, Sequence

import jinja2
import matplotlib

matplotlib.use("Agg")  # no display: render to files only
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

from contracts import evaluation_files
from contracts import run_record

COLORS = {"candidate": "#1f77b4", "serving": "#ff7f0e",
          "popularity": "#7f7f7f"}


def _svg(fig) -> str:
  buf = io.StringIO()
  fig.savefig(buf, format="svg", bbox_inches="tight")
  plt.close(fig)
  text = buf.getvalue()
  return text[text.index("<svg"):]


def bar_chart(title: str, metrics: Sequence[str],
              models: Mapping[str, Mapping[str, float]]) -> str:
  fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(metrics) + 2), 3.2))
  names = [m for m in models if models[m]]
  width = 0.8 / max(1, len(names))
  for i, name in enumerate(names):
    ax.bar([j + i * width for j in range(len(metrics))],
           [models[name].get(m, 0.0) or 0.0 for m in metrics], width,
           label=name, color=COLORS.get(name))
  ax.set_xticks([j + width * (len(names) - 1) / 2 for j in range(len(metrics))])
  ax.set_xticklabels(metrics, rotation=30, ha="right", fontsize=8)
  ax.set_title(title)
  if names:
    ax.legend(fontsize=8)
  return _svg(fig)


def calibration_chart(buckets: Sequence[Mapping[str, float]]) -> str:
  fig, ax = plt.subplots(figsize=(4, 4))
  ax.plot([0, 1], [0, 1], "--", color="#999", label="perfect")
  ax.plot([b["mean_predicted"] for b in buckets],
          [b["observed_rate"] for b in buckets], "o-",
          color=COLORS["candidate"], label="candidate")
  ax.set_xlabel("mean predicted p_like")
  ax.set_ylabel("observed like rate")
  ax.set_title("Calibration of p_like")
  ax.legend(fontsize=8)
  return _svg(fig)


def loss_chart(history: Mapping[str, Sequence[float]]) -> str:
  fig, ax = plt.subplots(figsize=(5, 3.2))
  for key in sorted(history):
    if key.endswith("_loss") and key not in ("regularization_loss",):
      values = history[key]
      ax.plot(range(1, len(values) + 1), values, "o-", label=key)
  ax.set_xlabel("epoch")
  ax.set_title("Training loss per task")
  ax.legend(fontsize=8)
  return _svg(fig)


def trend_chart(runs: Sequence[Mapping[str, Any]],
                metrics: Sequence[str]) -> str:
  fig, ax = plt.subplots(figsize=(6, 3.2))
  for m in metrics:
    ax.plot(range(1, len(runs) + 1),
            [r["metrics"].get(m, float("nan")) for r in runs], "o-", label=m)
  ax.set_xticks(range(1, len(runs) + 1))
  ax.set_xticklabels([r["run_id"][-13:] for r in runs], rotation=30,
                     ha="right", fontsize=7)
  ax.set_title("Key metrics across runs")
  ax.legend(fontsize=8)
  return _svg(fig)


def _fmt(v: Any) -> str:
  if isinstance(v, float):
    return f"{v:.4f}"
  return str(v)


_ENV = jinja2.Environment(autoescape=True)  # HTML: values are escaped
_ENV.filters["fmt"] = _fmt
_MD_ENV = jinja2.Environment(autoescape=False)
_MD_ENV.filters["fmt"] = _fmt

_HTML = _ENV.from_string("""<!doctype html>
<html><head><meta charset="utf-8"><title>Validation report — {{ run_id }}</title>
<style>
body{font-family:system-ui,sans-serif;margin:24px;max-width:1100px;color:#222}
h1{font-size:22px} h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
td,th{border:1px solid #ddd;padding:4px 8px;text-align:right}
th{background:#f5f5f5} td.l,th.l{text-align:left}
.verdict{display:inline-block;padding:6px 14px;border-radius:4px;color:#fff;font-weight:bold}
.BLESSED{background:#2e7d32} .NOT_BLESSED{background:#c62828}
tr.fail td{background:#fdecea} .charts{display:flex;flex-wrap:wrap;gap:16px}
.chart svg{max-width:100%;height:auto}
</style></head><body>
<h1>Model validation report</h1>
<p><span class="verdict {{ verdict }}" id="verdict">{{ verdict }}</span>
 &nbsp;run <code>{{ run_id }}</code>, model <code>{{ model_uri }}</code>,
 serving baseline: {{ serving_desc }}. Generated {{ generated }}.</p>
{% if failed %}<p><b>Failed checks:</b> {{ failed|join(", ") }}</p>{% endif %}
<h2>Checks</h2>
<table id="checks"><tr><th class="l">metric</th><th class="l">check</th><th>value</th><th></th><th>bound</th><th>result</th></tr>
{% for c in checks %}<tr class="{{ 'ok' if c.passed else 'fail' }}"><td class="l">{{ c.metric }}</td><td class="l">{{ c.check }}</td>
<td>{{ c.value|fmt }}</td><td>{{ c.op }}</td><td>{{ c.bound|fmt }}</td><td>{{ 'pass' if c.passed else 'FAIL' }}</td></tr>{% endfor %}
</table>
<h2>Candidate against baselines</h2>
<div class="charts">{% for svg in comparison_charts %}<div class="chart">{{ svg|safe }}</div>{% endfor %}</div>
<table><tr><th class="l">metric</th>{% for m in model_names %}<th>{{ m }}</th>{% endfor %}</tr>
{% for metric in overall_metrics %}<tr><td class="l">{{ metric }}</td>{% for m in model_names %}<td>{{ overall[m].get(metric, '')|fmt }}</td>{% endfor %}</tr>{% endfor %}
</table>
<h2>Slices</h2>
<p>Retrieval: users with at least one relevant item in the slice. Ranking: eval rows in the slice (TFMA).</p>
<table id="slices"><tr><th class="l">slice</th><th>users</th>{% for c in slice_columns %}<th>{{ c }}</th>{% endfor %}</tr>
{% for row in slice_rows %}<tr><td class="l">{{ row.name }}</td><td>{{ row.users }}</td>{% for c in slice_columns %}<td>{{ row.cells.get(c, '')|fmt }}</td>{% endfor %}</tr>{% endfor %}
</table>
<h2>Calibration</h2>
<div class="charts"><div class="chart">{{ calibration_svg|safe }}</div>
<table><tr><th>bucket</th><th>rows</th><th>mean predicted</th><th>observed</th></tr>
{% for b in calibration %}<tr><td>{{ '%.1f–%.1f'|format(b.lower, b.upper) }}</td><td>{{ b.count|int }}</td><td>{{ b.mean_predicted|fmt }}</td><td>{{ b.observed_rate|fmt }}</td></tr>{% endfor %}
</table></div>
<h2>Training</h2>
<div class="charts"><div class="chart">{{ loss_svg|safe }}</div></div>
<h2>Infra validation</h2>
<p>{{ infra_desc }}</p>
</body></html>
""")

_MD = _MD_ENV.from_string("""# Model validation: {{ verdict }}

Run `{{ run_id }}` · model `{{ model_uri }}` · serving baseline: {{ serving_desc }}

| metric | check | value | | bound | result |
|---|---|---|---|---|---|
{% for c in checks %}| {{ c.metric }} | {{ c.check }} | {{ c.value|fmt }} | {{ c.op }} | {{ c.bound|fmt }} | {{ 'pass' if c.passed else '**FAIL**' }} |
{% endfor %}
| metric | {% for m in model_names %}{{ m }} | {% endfor %}
|---|{% for m in model_names %}---|{% endfor %}
{% for metric in overall_metrics %}| {{ metric }} | {% for m in model_names %}{{ overall[m].get(metric, '')|fmt }} | {% endfor %}
{% endfor %}""")


def _slice_rows(retrieval: Mapping[str, Any], ranking: Mapping[str, Any],
                columns: Sequence[str]) -> list[dict[str, Any]]:
  cand_r = retrieval.get("candidate", {})
  pop_r = retrieval.get("popularity", {})
  cand_t = ranking.get("candidate", {})
  def order(name: str):
    kind, _, value = name.partition(":")
    first = value.split("-")[0].rstrip("+")
    return (name != "all", kind, int(first) if first.isdigit() else 0, value)

  names = sorted(set(cand_r) | set(cand_t), key=order)
  rows = []
  for name in names:
    values = {}
    for c in columns:
      if c.startswith("popularity "):
        values[c] = pop_r.get(name, {}).get(c[len("popularity "):], "")
      else:
        values[c] = cand_r.get(name, {}).get(c, cand_t.get(name, {}).get(
            c, ""))
    rows.append({"name": name, "users": cand_r.get(name, {}).get("users", ""),
                 "cells": values})
  return rows


def write_reports(directory: str, *, run_id: str, model_uri: str,
                  verdict: str, checks: Sequence[Mapping[str, Any]],
                  overall: Mapping[str, Mapping[str, float]],
                  retrieval: Mapping[str, Any], ranking: Mapping[str, Any],
                  calibration: Sequence[Mapping[str, float]],
                  history: Mapping[str, Sequence[float]],
                  infra: Optional[Mapping[str, Any]], ks: Sequence[int],
                  serving_desc: str) -> dict[str, str]:
  """Writes report.html and summary.md into `directory`; returns paths."""
  model_names = [m for m in ("candidate", "serving", "popularity")
                 if overall.get(m)]
  k_mid = sorted(ks)[len(ks) // 2]
  retrieval_metrics = [f"{m}_at_{k}" for m in ("recall", "ndcg")
                       for k in ks] + ["mrr"]
  ranking_metrics = ["rmse", "mae", "auc", "log_loss"]
  overall_metrics = sorted({k for m in model_names for k in overall[m]
                            if not k.endswith("example_count") and k != "users"})
  charts = [bar_chart("Retrieval (full catalog)", retrieval_metrics, overall)]
  ranking_models = {m: overall[m] for m in model_names if m != "popularity"}
  charts.append(bar_chart("Ranking heads", ranking_metrics, ranking_models))
  slice_columns = [f"recall_at_{k_mid}", f"ndcg_at_{k_mid}",
                   f"popularity recall_at_{k_mid}", "rmse", "auc"]
  infra_desc = "not run" if infra is None else (
      ("passed" if infra["passed"] else "FAILED") + "; latency " +
      ", ".join(f"{s} p50 {v['p50_ms']:.1f} ms / p95 {v['p95_ms']:.1f} ms"
                for s, v in infra.get("latency_ms", {}).items()))
  context = dict(
      run_id=run_id, model_uri=model_uri, verdict=verdict, checks=checks,
      failed=[f"{c['metric']} ({c['check']})" for c in checks
              if not c["passed"]],
      overall=overall, model_names=model_names,
      overall_metrics=overall_metrics, comparison_charts=charts,
      slice_columns=slice_columns,
      slice_rows=_slice_rows(retrieval, ranking, slice_columns),
      calibration=calibration,
      calibration_svg=calibration_chart(calibration) if calibration else "",
      loss_svg=loss_chart(history) if history else "",
      infra_desc=infra_desc, serving_desc=serving_desc,
      generated=datetime.datetime.now(datetime.timezone.utc).isoformat(
          timespec="seconds"))
  paths = {"html": os.path.join(directory, evaluation_files.REPORT_HTML),
           "markdown": os.path.join(directory, evaluation_files.SUMMARY_MD)}
  with open(paths["html"], "w") as f:
    f.write(_HTML.render(**context))
  with open(paths["markdown"], "w") as f:
    f.write(_MD.render(**context))
  return paths


KEY_METRICS = ("recall_at_20", "ndcg_at_20", "rmse", "auc")


def write_history(path: str, pipeline_root: str, current: Mapping[str, Any]
                  ) -> int:
  """A page with the trend of key metrics over the runs under the root.

  Earlier evaluations are found through the run records (run.json) under
  the root, not by the runner's folder layout; one evaluation reached from
  several runs (a cached Evaluator) counts once.
  """
  by_run = {}
  for uri in run_record.artifact_uris(pipeline_root, "Evaluator/evaluation"):
    try:
      m = evaluation_files.read_metrics(uri)
    except (OSError, ValueError):
      continue  # a run that failed before its evaluation was published
    if m.get("run_id") != current["run_id"]:
      by_run[m.get("run_id")] = m
  runs = [*by_run.values(), current]
  runs.sort(key=lambda m: m.get("created_at", ""))
  rows = [{"run_id": m["run_id"], "verdict": m.get("verdict", ""),
           "metrics": m.get("overall", {}).get("candidate", {})} for m in runs]
  page = _ENV.from_string("""<!doctype html><html><head><meta charset="utf-8">
<title>Validation history</title><style>body{font-family:system-ui,sans-serif;margin:24px}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:4px 8px}</style></head>
<body><h1>Validation history ({{ rows|length }} runs)</h1><div>{{ svg|safe }}</div>
<table><tr><th>run</th><th>verdict</th>{% for k in keys %}<th>{{ k }}</th>{% endfor %}</tr>
{% for r in rows %}<tr><td>{{ r.run_id }}</td><td>{{ r.verdict }}</td>{% for k in keys %}<td>{{ r.metrics.get(k, '')|fmt }}</td>{% endfor %}</tr>{% endfor %}
</table></body></html>""").render(rows=rows, keys=KEY_METRICS,
                                  svg=trend_chart(rows, KEY_METRICS))
  with open(path, "w") as f:
    f.write(page)
  return len(rows)
