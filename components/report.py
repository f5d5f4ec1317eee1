"""Validation reports people read: HTML (self-contained), Markdown, history.

The HTML report has its charts inline as SVG (matplotlib), so it can be
mailed, attached to a KFP run or opened from a bucket with nothing else
beside it. It leads with the verdict and the checks, then compares the
candidate with its baselines, its served (fused) order with its own
retrieval order, every ranking task's metrics, slices, calibration per
binary task and training losses.

Charts put only metrics of one direction on an axis (higher is better, or
lower is better); a metric best at a value (calibration, best at 1) is in
the tables only.

Every estimate the Evaluator could bootstrap carries its interval
(components.confidence): bars get error bars, table cells `value [low,
high]`, the checks an interval column (for "beats popularity", the paired
difference the verdict was decided on), and a table lists each paired
difference candidate − baseline with whether its interval clears zero.
Calibration buckets show their example counts, and buckets below
evaluator.calibration_min_count are merged with a neighbour first
(components.metrics.merge_sparse_buckets).
"""

from __future__ import annotations

import datetime
import io
import math
import os
from typing import Any, Mapping, Optional, Sequence, Union

import jinja2
import matplotlib

matplotlib.use("Agg")  # no display: render to files only
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

from components import metric_names
from components import metrics as metric_formulas
from contracts import evaluation_files
from contracts import run_record

CANDIDATE = "candidate"
RETRIEVAL_ORDER = "candidate_retrieval_order"
# A distilled candidate's comparisons (trainer.distillation): the model it
# learned from, and itself trained without it.
TEACHER = "teacher"
UNDISTILLED = "undistilled_student"
COLORS = {CANDIDATE: "#1f77b4", "serving": "#ff7f0e",
          "popularity": "#7f7f7f", RETRIEVAL_ORDER: "#17becf",
          TEACHER: "#2ca02c", UNDISTILLED: "#9467bd"}
MODEL_ORDER = (CANDIDATE, RETRIEVAL_ORDER, "serving", TEACHER, UNDISTILLED,
               "popularity")
# The tasks of a model exported before model cards.
LEGACY_TASKS = ({"name": "rating", "kind": "regression"},
                {"name": "like", "kind": "binary"})


def figure_svg(fig) -> str:
  buf = io.StringIO()
  fig.savefig(buf, format="svg", bbox_inches="tight")
  plt.close(fig)
  text = buf.getvalue()
  return text[text.index("<svg"):]


def _error_bars(values: Sequence[float], metrics: Sequence[str],
                intervals: Mapping[str, Any]) -> Optional[list[list[float]]]:
  """matplotlib's yerr ([below], [above]) from [low, high] intervals; None
  when no metric has one."""
  below, above, any_interval = [], [], False
  for value, metric in zip(values, metrics):
    low, high = _interval(intervals.get(metric))
    if low is None or high is None:
      below.append(0.0)
      above.append(0.0)
      continue
    any_interval = True
    below.append(max(0.0, value - low))
    above.append(max(0.0, high - value))
  return [below, above] if any_interval else None


def bar_chart(title: str, metrics: Sequence[str],
              models: Mapping[str, Mapping[str, float]],
              intervals: Optional[Mapping[str, Mapping[str, Any]]] = None
              ) -> str:
  """Grouped bars; `metrics` must share a direction (say it in `title`).

  Args:
    intervals: model -> metric -> [low, high], drawn as error bars.
  """
  intervals = intervals or {}
  fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(metrics) + 2), 3.2))
  names = [m for m in models if models[m]]
  width = 0.8 / max(1, len(names))
  for i, name in enumerate(names):
    values = [_num(models[name].get(m)) or 0.0 for m in metrics]
    ax.bar([j + i * width for j in range(len(metrics))], values, width,
           label=name, color=COLORS.get(name),
           yerr=_error_bars(values, metrics, intervals.get(name, {})),
           error_kw={"elinewidth": 1, "capsize": 2, "ecolor": "#333"})
  ax.set_xticks([j + width * (len(names) - 1) / 2 for j in range(len(metrics))])
  ax.set_xticklabels(metrics, rotation=30, ha="right", fontsize=8)
  ax.set_title(title)
  if names:
    ax.legend(fontsize=8)
  return figure_svg(fig)


def observed_rate_interval(bucket: Mapping[str, float],
                           level: float = 0.95) -> list[float]:
  """Wilson score interval of a bucket's observed rate (scipy's binomtest):
  how far the rate of `count` examples can be from the true one."""
  import scipy.stats  # pylint: disable=g-import-not-at-top
  n = max(1, int(round(bucket["count"])))
  k = min(n, max(0, int(round(bucket["observed_rate"] * n))))
  ci = scipy.stats.binomtest(k, n).proportion_ci(level, method="wilson")
  return [float(ci.low), float(ci.high)]


def calibration_chart(buckets: Sequence[Mapping[str, float]],
                      task: str = "like", level: float = 0.95) -> str:
  """Observed against predicted per bucket; each point is labelled with
  its example count, sized by it, and carries the Wilson interval of its
  observed rate, so a thin bucket looks thin."""
  fig, ax = plt.subplots(figsize=(4.4, 4))
  ax.plot([0, 1], [0, 1], "--", color="#999", label="perfect")
  xs = [b["mean_predicted"] for b in buckets]
  ys = [b["observed_rate"] for b in buckets]
  counts = [b["count"] for b in buckets]
  spans = [observed_rate_interval(b, level) for b in buckets]
  ax.errorbar(xs, ys, yerr=[[max(0.0, y - lo) for y, (lo, _) in zip(ys, spans)],
                            [max(0.0, hi - y) for y, (_, hi) in zip(ys, spans)]],
              fmt="none", ecolor="#333", elinewidth=1, capsize=2)
  ax.plot(xs, ys, "-", color=COLORS[CANDIDATE], label=CANDIDATE)
  biggest = max(counts, default=1) or 1
  ax.scatter(xs, ys, s=[12 + 100 * (c / biggest) ** 0.5 for c in counts],
             color=COLORS[CANDIDATE], zorder=3)
  for x, y, c in zip(xs, ys, counts):
    ax.annotate(f"n={c:,.0f}", (x, y), textcoords="offset points",
                xytext=(4, -10), fontsize=7, color="#333")
  ax.set_xlabel(f"mean predicted p_{task}")
  ax.set_ylabel(f"observed {task} rate")
  ax.set_title(f"Calibration of p_{task}")
  ax.legend(fontsize=8)
  return figure_svg(fig)


def loss_chart(history: Mapping[str, Sequence[float]]) -> str:
  fig, ax = plt.subplots(figsize=(5, 3.2))
  for key in sorted(history):
    if key.endswith("_loss") and key not in ("regularization_loss",):
      values = history[key]
      ax.plot(range(1, len(values) + 1), values, "o-", label=key)
  ax.set_xlabel("epoch")
  ax.set_title("Training loss per task")
  ax.legend(fontsize=8)
  return figure_svg(fig)


def _value(metrics: Mapping[str, Any], name: str) -> Any:
  """A metric by its name, else by its legacy alias (older evaluations)."""
  if name in metrics:
    return metrics[name]
  for alias, canonical in metric_names.LEGACY_ALIASES.items():
    if canonical == name and alias in metrics:
      return metrics[alias]
  return float("nan")


def direction_groups(metrics: Sequence[str]
                     ) -> list[tuple[str, list[str]]]:
  """("higher is better", [...]), ("lower is better", [...]): what may
  share an axis. Empty groups and metrics without a direction are left
  out."""
  groups = [(title, [m for m in metrics if metric_names.has_direction(m) and
                     metric_names.higher_is_better(m) == higher])
            for title, higher in (("higher is better", True),
                                  ("lower is better", False))]
  return [(t, ms) for t, ms in groups if ms]


def trend_chart(runs: Sequence[Mapping[str, Any]],
                metrics: Sequence[str]) -> str:
  """One panel per direction: higher-is-better, then lower-is-better."""
  groups = direction_groups(metrics)
  fig, axes = plt.subplots(1, max(1, len(groups)),
                           figsize=(6 * max(1, len(groups)), 3.2),
                           squeeze=False)
  for ax, (title, group) in zip(axes[0], groups):
    for m in group:
      ax.plot(range(1, len(runs) + 1),
              [_value(r["metrics"], m) for r in runs], "o-", label=m)
    ax.set_xticks(range(1, len(runs) + 1))
    ax.set_xticklabels([r["run_id"][-13:] for r in runs], rotation=30,
                       ha="right", fontsize=7)
    ax.set_title(f"Key metrics across runs ({title})")
    ax.legend(fontsize=8)
  return figure_svg(fig)


def _fmt(v: Any) -> str:
  if isinstance(v, float):
    return f"{v:.4f}"
  return str(v)


def _interval(value: Any) -> tuple[Optional[float], Optional[float]]:
  """(low, high) of a [low, high] interval; (None, None) without one."""
  if isinstance(value, Mapping):
    value = [value.get("low"), value.get("high")]
  if not isinstance(value, (list, tuple)) or len(value) != 2:
    return None, None
  low, high = (_num(v) for v in value)
  if low is None or high is None or math.isnan(low) or math.isnan(high):
    return None, None
  return low, high


def _interval_text(value: Any) -> str:
  """`[low, high]`, or "" without an interval."""
  low, high = _interval(value)
  return "" if low is None else f"[{low:.4f}, {high:.4f}]"


def _signed(v: Any) -> str:
  return f"{v:+.4f}" if isinstance(v, float) else _fmt(v)


def _check_interval(c: Mapping[str, Any]) -> str:
  """A check's interval column: what it is of, the interval, its level."""
  iv = c.get("interval")
  text = _interval_text(iv)
  if not text:
    return ""
  return f"{iv.get('of', '')} {text} ({iv.get('level', 0):.0%})".strip()


_ENV = jinja2.Environment(autoescape=True)  # HTML: values are escaped
_MD_ENV = jinja2.Environment(autoescape=False)
for _env in (_ENV, _MD_ENV):
  _env.filters.update(fmt=_fmt, ci=_interval_text, signed=_signed,
                      check_interval=_check_interval)

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
.chart svg{max-width:100%;height:auto} .ci{color:#666;font-size:11px;white-space:nowrap}
</style></head><body>
{% macro cell(v, iv) %}{{ v|fmt }}{% if iv|ci %}<br><span class="ci">{{ iv|ci }}</span>{% endif %}{% endmacro %}
<h1>Model validation report</h1>
<p><span class="verdict {{ verdict }}" id="verdict">{{ verdict }}</span>
 &nbsp;run <code>{{ run_id }}</code>, model <code>{{ model_uri }}</code>,
 serving baseline: {{ serving_desc }}. Generated {{ generated }}.</p>
{% if failed %}<p><b>Failed checks:</b> {{ failed|join(", ") }}</p>{% endif %}
<h2>Checks</h2>
<table id="checks"><tr><th class="l">metric</th><th class="l">check</th><th>value</th><th class="l">interval</th><th></th><th>bound</th><th>result</th></tr>
{% for c in checks %}<tr class="{{ 'ok' if c.passed else 'fail' }}"><td class="l">{{ c.metric }}</td><td class="l">{{ c.check }}</td>
<td>{{ c.value|fmt }}</td><td class="l ci">{{ c|check_interval }}</td><td>{{ c.op }}</td><td>{{ c.bound|fmt }}</td><td>{{ 'pass' if c.passed else 'FAIL' }}</td></tr>{% endfor %}
</table>
{% if uncertainty_desc %}<p>{{ uncertainty_desc }}</p>{% endif %}
<h2>Candidate against baselines</h2>
<div class="charts">{% for svg in comparison_charts %}<div class="chart">{{ svg|safe }}</div>{% endfor %}</div>
<table id="overall"><tr><th class="l">metric</th>{% for m in model_names %}<th>{{ m }}</th>{% endfor %}</tr>
{% for metric in overall_metrics %}<tr><td class="l">{{ metric }}</td>{% for m in model_names %}<td>{{ cell(overall[m].get(metric, ''), intervals.get(m, {}).get(metric)) }}</td>{% endfor %}</tr>{% endfor %}
</table>
{% if alias_note %}<p>{{ alias_note }}</p>{% endif %}
{% if distillation_note %}<p id="distillation">{{ distillation_note }}</p>{% endif %}
{% if difference_rows %}<h3>Paired differences: candidate − baseline</h3>
<p>Each resample draws the same eval users for the candidate and the baseline ({{ level }} percentile intervals). "clear" means the whole interval is on one side of zero.</p>
<table id="differences"><tr><th class="l">metric</th><th class="l">baseline</th><th>difference</th><th>interval</th><th>users</th><th class="l">better</th><th class="l">outcome</th></tr>
{% for row in difference_rows %}<tr><td class="l">{{ row.metric }}</td><td class="l">{{ row.baseline }}</td><td>{{ row.difference|signed }}</td><td class="ci">{{ row.interval|ci }}</td><td>{{ row.units }}</td><td class="l">{{ row.better }}</td><td class="l">{{ row.outcome }}</td></tr>{% endfor %}
</table>{% endif %}
{% if order_rows %}<h2>Served (fused) order against the retrieval order</h2>
<p>The candidate as served ({{ fusion_desc }}) and the same model's retrieval order (recommend_weighted: weight 1 on retrieval, 0 on every ranking task), on the same users.</p>
<div class="charts"><div class="chart">{{ order_svg|safe }}</div></div>
<table id="orders"><tr><th class="l">metric</th><th>fused (served)</th><th>retrieval order</th><th>fused − retrieval</th><th class="l">better</th></tr>
{% for row in order_rows %}<tr><td class="l">{{ row.metric }}</td><td>{{ row.fused|fmt }}</td><td>{{ row.retrieval|fmt }}</td><td>{{ cell(row.diff, row.interval) }}</td><td class="l">{{ row.better }}</td></tr>{% endfor %}
</table>{% endif %}
{% if search %}<h3>How the fusion weights were chosen</h3>
<p>{% if search.source == "validation split" %}On the validation split, never the eval split: {{ search.users }} users' validation events ({{ search.held_out_items }} items), ranked by the served model, which never trained on them.{% else %}On a validation slice of the train split, never the eval split: {{ search.users }} users' latest training events held out of the model that chose them ({{ search.held_out_items }} items{% if search.refit %}; the served model was then refit on the whole train split{% endif %}).{% endif %} Coordinate ascent on {{ search.objective }}: {{ search.retrieval_only_objective|fmt }} in the retrieval order, {{ search.chosen_objective|fmt }} with the chosen weights.</p>
<table id="search"><tr><th>round</th><th class="l">task</th>{% for w in search_grid %}<th>weight {{ '%g'|format(w) }}</th>{% endfor %}</tr>
{% for row in search_rows %}<tr><td>{{ row.round }}</td><td class="l">{{ row.task }}</td>{% for w in search_grid %}<td>{% if w in row['values'] %}{% if row.chosen == w %}<b>{{ row['values'][w]|fmt }}</b>{% else %}{{ row['values'][w]|fmt }}{% endif %}{% endif %}</td>{% endfor %}</tr>{% endfor %}
</table>{% endif %}
<h2>Ranking tasks</h2>
<p>Each task on the eval rows its label covers (TFMA for binary and regression tasks; multilabel tasks computed directly).</p>
<div class="charts">{% for svg in ranking_charts %}<div class="chart">{{ svg|safe }}</div>{% endfor %}</div>
<table id="ranking"><tr><th class="l">task</th><th class="l">kind</th><th class="l">metric</th>{% for m in ranking_models %}<th>{{ m }}</th>{% endfor %}<th class="l">better</th></tr>
{% for row in ranking_rows %}<tr><td class="l">{{ row.task }}</td><td class="l">{{ row.kind }}</td><td class="l">{{ row.metric }}</td>{% for m in ranking_models %}<td>{{ cell(row['values'][m], row.intervals[m]) }}</td>{% endfor %}<td class="l">{{ row.better }}</td></tr>{% endfor %}
</table>
<h2>Slices</h2>
<p>Retrieval: users with at least one relevant item in the slice. Ranking: eval rows in the slice.</p>
<table id="slices"><tr><th class="l">slice</th><th>users</th>{% for c in slice_columns %}<th>{{ c }}</th>{% endfor %}</tr>
{% for row in slice_rows %}<tr><td class="l">{{ row.name }}</td><td>{{ row.users }}</td>{% for c in slice_columns %}<td>{{ row.cells.get(c, '')|fmt }}</td>{% endfor %}</tr>{% endfor %}
</table>
<h2>Calibration</h2>
<p>Equal-width buckets of the predicted probability, each with its example count and the {{ level }} Wilson interval of its observed rate; buckets with fewer than {{ calibration_min_count }} examples are merged with a neighbour.</p>
{% for c in calibrations %}<h3>{{ c.task }}</h3>
<div class="charts"><div class="chart">{{ c.svg|safe }}</div>
<table><tr><th>bucket</th><th>rows</th><th>mean predicted</th><th>observed</th></tr>
{% for b in c.buckets %}<tr><td>{{ '%.1f–%.1f'|format(b.lower, b.upper) }}</td><td>{{ b.count|int }}</td><td>{{ b.mean_predicted|fmt }}</td><td>{{ cell(b.observed_rate, b.observed_interval) }}</td></tr>{% endfor %}
</table></div>{% else %}<p>No binary task.</p>{% endfor %}
<h2>Training</h2>
<div class="charts"><div class="chart">{{ loss_svg|safe }}</div></div>
<h2>Infra validation</h2>
<p>{{ infra_desc }}</p>
{{ explanation_section|safe }}
{{ data_section|safe }}
</body></html>
""")

_MD = _MD_ENV.from_string("""# Model validation: {{ verdict }}

Run `{{ run_id }}` · model `{{ model_uri }}` · serving baseline: {{ serving_desc }}

| metric | check | value | interval | | bound | result |
|---|---|---|---|---|---|---|
{% for c in checks %}| {{ c.metric }} | {{ c.check }} | {{ c.value|fmt }} | {{ c|check_interval }} | {{ c.op }} | {{ c.bound|fmt }} | {{ 'pass' if c.passed else '**FAIL**' }} |
{% endfor %}{% if uncertainty_desc %}
{{ uncertainty_desc }}
{% endif %}
| metric | {% for m in model_names %}{{ m }} | {% endfor %}
|---|{% for m in model_names %}---|{% endfor %}
{% for metric in overall_metrics %}| {{ metric }} | {% for m in model_names %}{{ overall[m].get(metric, '')|fmt }}{% if intervals.get(m, {}).get(metric)|ci %} {{ intervals.get(m, {}).get(metric)|ci }}{% endif %} | {% endfor %}
{% endfor %}{% if alias_note %}
{{ alias_note }}
{% endif %}{% if difference_rows %}
Paired differences, candidate − baseline ({{ level }} intervals, the same users resampled for both):

| metric | baseline | difference | interval | users | better | outcome |
|---|---|---|---|---|---|---|
{% for row in difference_rows %}| {{ row.metric }} | {{ row.baseline }} | {{ row.difference|signed }} | {{ row.interval|ci }} | {{ row.units }} | {{ row.better }} | {{ row.outcome }} |
{% endfor %}{% endif %}{% if order_rows %}
Served (fused: {{ fusion_desc }}) against the same model's retrieval order:

| retrieval metric | fused (served) | retrieval order | fused − retrieval | better |
|---|---|---|---|---|
{% for row in order_rows %}| {{ row.metric }} | {{ row.fused|fmt }} | {{ row.retrieval|fmt }} | {{ row.diff|fmt }} | {{ row.better }} |
{% endfor %}{% endif %}{% if search %}
Fusion weights chosen on {{ search.users }} validation users of the train split: {{ search.objective }} {{ search.retrieval_only_objective|fmt }} in the retrieval order, {{ search.chosen_objective|fmt }} with the chosen weights.
{% endif %}{% if ranking_rows %}
| task | kind | ranking metric | {% for m in ranking_models %}{{ m }} | {% endfor %}better |
|---|---|---|{% for m in ranking_models %}---|{% endfor %}---|
{% for row in ranking_rows %}| {{ row.task }} | {{ row.kind }} | {{ row.metric }} | {% for m in ranking_models %}{{ row['values'][m]|fmt }}{% if row.intervals[m]|ci %} {{ row.intervals[m]|ci }}{% endif %} | {% endfor %}{{ row.better }} |
{% endfor %}{% endif %}""")


def _search_rows(search: Mapping[str, Any]
                 ) -> tuple[list[float], list[dict[str, Any]]]:
  """The fusion search curve as (grid, one row per round and task: the
  objective at each weight tried, and the weight the task kept)."""
  grid = sorted({p["weight"] for p in search.get("curve", ())})
  rows: dict[tuple[int, str], dict[str, Any]] = {}
  for p in search.get("curve", ()):
    row = rows.setdefault((p["round"], p["task"]), {
        "round": p["round"], "task": p["task"], "values": {}})
    row["values"][p["weight"]] = p["objective"]
  # Replays the search's rule (trainer/fusion_search.py): a task's weight
  # moves to a value tried only on a strict gain over the current one.
  kept = dict(search.get("declared_weights") or {})
  for row in rows.values():
    chosen = kept.get(row["task"])
    best = row["values"].get(chosen, float("-inf"))
    for weight, value in row["values"].items():
      if value > best + 1e-12:
        chosen, best = weight, value
    row["chosen"] = kept[row["task"]] = chosen
  return grid, list(rows.values())


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


def _better(metric: str) -> str:
  if not metric_names.has_direction(metric):
    return "closer to 1"
  return "higher" if metric_names.higher_is_better(metric) else "lower"


def _num(v: Any) -> Optional[float]:
  return float(v) if isinstance(v, (int, float)) and not isinstance(
      v, bool) else None


def _order_rows(overall: Mapping[str, Mapping[str, Any]],
                ks: Sequence[int],
                differences: Optional[Mapping[str, Any]] = None
                ) -> list[dict[str, Any]]:
  """The fused and the retrieval order, metric by metric, with the paired
  interval of their difference where the Evaluator drew one."""
  paired = (differences or {}).get(RETRIEVAL_ORDER, {})
  fused, plain = overall.get(CANDIDATE, {}), overall.get(RETRIEVAL_ORDER, {})
  if not plain:
    return []
  names = [f"{m}_at_{k}" for m in ("recall", "ndcg", "graded_ndcg",
                                   "liked_recall") for k in ks]
  names += ["mrr", "catalog_coverage_at_10", "mean_popularity_at_10"]
  rows = []
  for name in names:
    a, b = _num(fused.get(name)), _num(plain.get(name))
    if a is None and b is None:
      continue
    rows.append({"metric": name, "fused": fused.get(name, ""),
                 "retrieval": plain.get(name, ""),
                 "diff": a - b if a is not None and b is not None else "",
                 "interval": paired.get(name, {}).get("interval"),
                 "better": _better(name)})
  return rows


def _ranking_rows(tasks: Sequence[Mapping[str, Any]],
                  overall: Mapping[str, Mapping[str, Any]],
                  models: Sequence[str],
                  intervals: Optional[Mapping[str, Mapping[str, Any]]] = None
                  ) -> list[dict[str, Any]]:
  intervals = intervals or {}
  rows = []
  for t in tasks:
    for metric in metric_names.task_metric_names(t["name"], t["kind"]):
      rows.append({"task": t["name"], "kind": t["kind"], "metric": metric,
                   "values": {m: overall.get(m, {}).get(metric, "")
                              for m in models},
                   "intervals": {m: intervals.get(m, {}).get(metric)
                                 for m in models},
                   "better": _better(metric)})
  return rows


# Baselines of the paired-differences table, in the order shown.
DIFFERENCE_BASELINES = ("popularity", "serving", RETRIEVAL_ORDER)


def _difference_rows(differences: Mapping[str, Mapping[str, Any]],
                     metrics: Sequence[str]) -> list[dict[str, Any]]:
  """One row per (metric, baseline): candidate − baseline, its interval,
  and which side of zero the whole interval is on (if one)."""
  rows = []
  for metric in metrics:
    for baseline in DIFFERENCE_BASELINES:
      d = differences.get(baseline, {}).get(metric)
      if not d or d.get("difference") is None:
        continue
      low, high = _interval(d.get("interval"))
      higher = metric_names.higher_is_better(metric)
      if low is None:
        outcome = "no interval"
      elif low > 0 or high < 0:
        outcome = ("candidate better" if (low > 0) == higher
                   else "baseline better")
      else:
        outcome = "no clear difference"
      rows.append({"metric": metric, "baseline": baseline,
                   "difference": d["difference"],
                   "interval": d.get("interval"), "units": d.get("units", ""),
                   "better": _better(metric), "outcome": outcome})
  return rows


def _ranking_charts(tasks: Sequence[Mapping[str, Any]],
                    models: Mapping[str, Mapping[str, Any]],
                    intervals: Optional[Mapping[str, Mapping[str, Any]]]
                    = None) -> list[str]:
  """One chart per direction: AUCs and recalls, then errors and losses."""
  names = [m for t in tasks for m in metric_names.task_metric_names(t["name"], t["kind"])]
  return [bar_chart(f"Ranking tasks: {title}", group, models, intervals)
          for title, group in direction_groups(names)]


def distillation_note(model_names: Sequence[str]) -> str:
  """What the distillation columns are, when the candidate has them."""
  if TEACHER not in model_names and UNDISTILLED not in model_names:
    return ""
  return (f"Distillation: the candidate was trained on the soft targets of "
          f"`{TEACHER}` (a bigger model of the same tasks) as well as its "
          f"labels; `{UNDISTILLED}` is the same candidate trained on labels "
          "only, with the same seed and fusion weights. The difference "
          "between the two is what distillation did; both serve at the "
          "same cost. Informative: no check reads these columns.")


def write_reports(directory: str, *, run_id: str, model_uri: str,
                  verdict: str, checks: Sequence[Mapping[str, Any]],
                  overall: Mapping[str, Mapping[str, float]],
                  retrieval: Mapping[str, Any], ranking: Mapping[str, Any],
                  calibration: Union[Mapping[str, Sequence[Mapping[str, float]]],
                                     Sequence[Mapping[str, float]]],
                  history: Mapping[str, Sequence[float]],
                  infra: Optional[Mapping[str, Any]], ks: Sequence[int],
                  serving_desc: str,
                  tasks: Optional[Sequence[Mapping[str, Any]]] = None,
                  fusion: Optional[Mapping[str, Any]] = None,
                  intervals: Optional[Mapping[str, Mapping[str, Any]]] = None,
                  differences: Optional[Mapping[str, Mapping[str, Any]]]
                  = None,
                  bootstrap: Optional[Mapping[str, Any]] = None,
                  calibration_min_count: float = 1,
                  data_section: str = "",
                  explanation_section: str = ""
                  ) -> dict[str, str]:
  """Writes report.html and summary.md into `directory`; returns paths.

  Args:
    calibration: binary task -> calibration buckets (a plain list: the
      like task's, as older evaluations wrote it).
    tasks: the candidate's ranking tasks ({name, kind}); None: rating and
      like, the tasks of a model without a model card.
    fusion: the candidate's fused stage (fusion_tasks, fusion_weights).
    intervals: model -> metric -> [low, high] (overall).
    differences: baseline -> metric -> {difference, interval, units}: the
      paired bootstrap of candidate − baseline.
    bootstrap: how the intervals were drawn (resamples, confidence, seed).
    calibration_min_count: buckets with fewer examples are merged with a
      neighbour (components.metrics.merge_sparse_buckets).
    data_section: the ExampleValidator's HTML fragment (components/
      data_report.py), placed after the checks; "" for none.
    explanation_section: example explanations (components/
      explanations.py); "" for none.
  """
  intervals = intervals or {}
  differences = differences or {}
  bootstrap = bootstrap or {}
  tasks = list(LEGACY_TASKS if tasks is None else tasks)
  if not isinstance(calibration, Mapping):
    calibration = {"like": calibration} if calibration else {}
  model_names = [m for m in MODEL_ORDER if overall.get(m)]
  k_mid = sorted(ks)[len(ks) // 2]
  present = {k for m in model_names for k in overall[m]}
  # An alias is shown under its own name only when that name is missing.
  shown_aliases = {a for a, c in metric_names.LEGACY_ALIASES.items()
                   if a in present and c not in present}
  overall_metrics = sorted(
      k for k in present if not k.endswith("example_count") and
      k not in ("users", "liked_users") and
      (k not in metric_names.LEGACY_ALIASES or k in shown_aliases))
  hidden = sorted(set(metric_names.LEGACY_ALIASES) & present - shown_aliases)
  alias_note = ("Also in metrics.json under their older names: " + ", ".join(
      f"{a} = {metric_names.LEGACY_ALIASES[a]}" for a in hidden) + ".") if hidden else ""

  baselines = {m: overall[m] for m in model_names if m != RETRIEVAL_ORDER}
  retrieval_metrics = [f"{m}_at_{k}" for m in ("recall", "ndcg")
                       for k in ks] + ["mrr"]
  charts = [bar_chart("Retrieval, full catalog (higher is better)",
                      retrieval_metrics, baselines, intervals)]
  graded = [f"{m}_at_{k}" for m in ("graded_ndcg", "liked_recall")
            for k in ks if f"{m}_at_{k}" in present]
  if graded:
    charts.append(bar_chart(
        "Value-aware retrieval: liked 2, consumed 1 (higher is better)",
        graded, baselines, intervals))
  ranking_models = [m for m in (CANDIDATE, "serving", TEACHER, UNDISTILLED)
                    if overall.get(m)]
  ranking_charts = _ranking_charts(
      tasks, {m: overall[m] for m in ranking_models}, intervals)
  order_rows = _order_rows(overall, ks, differences)
  order_svg = bar_chart(
      "Served (fused) vs retrieval order (higher is better)",
      [r["metric"] for r in order_rows if r["better"] == "higher" and
       r["metric"] != "catalog_coverage_at_10"],
      {m: overall[m] for m in (CANDIDATE, RETRIEVAL_ORDER)}, intervals) if (
          order_rows) else ""
  fusion = fusion or {}
  fusion_desc = ", ".join(
      f"{t} {w:g}" for t, w in zip(fusion.get("fusion_tasks") or (),
                                   fusion.get("fusion_weights") or ()))
  fusion_desc = f"fusion weights {fusion_desc}" if fusion_desc else "fused"
  search = fusion.get("search") or None
  search_grid, search_rows = _search_rows(search) if search else ([], [])

  headline = {"regression": "rmse", "binary": "auc", "multilabel": "auc"}
  slice_columns = [f"recall_at_{k_mid}", f"ndcg_at_{k_mid}",
                   f"popularity recall_at_{k_mid}"] + [
                       f"{t['name']}_{headline[t['kind']]}" for t in tasks
                       if t["kind"] in headline]
  infra_desc = "not run" if infra is None else (
      ("passed" if infra["passed"] else "FAILED") + "; latency " +
      ", ".join(f"{s} p50 {v['p50_ms']:.1f} ms / p95 {v['p95_ms']:.1f} ms"
                for s, v in infra.get("latency_ms", {}).items()))
  level = f"{bootstrap.get('confidence', 0.95):.0%}"
  uncertainty_desc = (
      f"Intervals: {level} percentile bootstrap, {bootstrap['resamples']:,} "
      f"resamples (seed {bootstrap.get('seed')}), over eval users for "
      "retrieval and over eval examples for the ranking tasks. "
      "\"Beats popularity\" passes only when the whole interval of the "
      "paired difference candidate − popularity clears the bound."
  ) if bootstrap.get("resamples") else ""
  calibrations = []
  for task, buckets in calibration.items():
    merged = metric_formulas.merge_sparse_buckets(buckets,
                                                  calibration_min_count)
    for b in merged:
      b["observed_interval"] = observed_rate_interval(
          b, bootstrap.get("confidence", 0.95))
    if merged:
      calibrations.append({"task": task, "buckets": merged,
                           "svg": calibration_chart(
                               merged, task,
                               bootstrap.get("confidence", 0.95))})
  context = dict(
      run_id=run_id, model_uri=model_uri, verdict=verdict, checks=checks,
      failed=[f"{c['metric']} ({c['check']})" for c in checks
              if not c["passed"]],
      overall=overall, model_names=model_names,
      distillation_note=distillation_note(model_names),
      overall_metrics=overall_metrics, comparison_charts=charts,
      alias_note=alias_note, order_rows=order_rows, order_svg=order_svg,
      fusion_desc=fusion_desc, search=search, search_grid=search_grid,
      search_rows=search_rows, ranking_models=ranking_models,
      ranking_rows=_ranking_rows(tasks, overall, ranking_models, intervals),
      intervals=intervals, level=level, uncertainty_desc=uncertainty_desc,
      difference_rows=_difference_rows(differences, overall_metrics),
      calibration_min_count=f"{calibration_min_count:g}",
      ranking_charts=ranking_charts, slice_columns=slice_columns,
      slice_rows=_slice_rows(retrieval, ranking, slice_columns),
      calibrations=calibrations,
      loss_svg=loss_chart(history) if history else "",
      infra_desc=infra_desc, serving_desc=serving_desc,
      data_section=data_section, explanation_section=explanation_section,
      generated=datetime.datetime.now(datetime.timezone.utc).isoformat(
          timespec="seconds"))
  paths = {"html": os.path.join(directory, evaluation_files.REPORT_HTML),
           "markdown": os.path.join(directory, evaluation_files.SUMMARY_MD)}
  with open(paths["html"], "w") as f:
    f.write(_HTML.render(**context))
  with open(paths["markdown"], "w") as f:
    f.write(_MD.render(**context))
  return paths


# Legacy names: an older evaluation has only these, a newer one both.
KEY_METRICS = ("recall_at_20", "ndcg_at_20", "graded_ndcg_at_20",
               "liked_recall_at_20", "rmse", "auc")


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
