"""The data section of the validation report: statistics, anomalies, drift.

An HTML fragment the ExampleValidator renders from the statistics it
validated: the anomalies first (blocking ones marked), then drift and skew
per feature with their thresholds, a table of every feature per split, and
charts, the value shares of each low-cardinality string feature and the
histogram of each numeric one, with train, eval and the previous run's
train split side by side. The ExampleValidator writes it as its own page
(a KFP HTML output) and beside it as a fragment the Evaluator's report
includes, so the one report a user reads shows the data with the model.
"""

from __future__ import annotations

import html
import os
from typing import Any, Mapping, Optional

import matplotlib.pyplot as plt
from tensorflow_metadata.proto.v0 import statistics_pb2

from components import data_drift
from components import statistics_gen
from components.report import figure_svg

FRAGMENT_FILE = "data_section.html"
# String features with at most this many distinct values get a chart.
CHART_MAX_UNIQUE = 30
CHART_VALUES = 12
PREVIOUS = "previous train"
COLORS = {"train": "#1f77b4", "eval": "#ff7f0e", "validation": "#2ca02c",
          PREVIOUS: "#7f7f7f"}

_Datasets = Mapping[str, statistics_pb2.DatasetFeatureStatistics]


def _fmt(v: Any) -> str:
  if isinstance(v, float):
    return f"{v:.4g}"
  if isinstance(v, int):
    return f"{v:,}"
  return html.escape(str(v))


def _feature_rows(split: str, dataset: statistics_pb2.DatasetFeatureStatistics
                  ) -> list[str]:
  rows = []
  for name, s in sorted(statistics_gen.feature_stats(dataset).items()):
    if data_drift.is_categorical(s):
      c = s.string_stats.common_stats
      top = s.string_stats.top_values
      summary = (f"{s.string_stats.unique:,} distinct; top "
                 + (f"{_fmt(top[0].value)} ({int(top[0].frequency):,})"
                    if top else "—"))
      spread = ["", "", "", ""]
    else:
      c = s.num_stats.common_stats
      n = s.num_stats
      summary = f"mean {_fmt(n.mean)} ± {_fmt(n.std_dev)}; zeros {n.num_zeros:,}"
      spread = [_fmt(n.min), _fmt(n.median), _fmt(n.max), ""]
    kind = statistics_pb2.FeatureNameStatistics.Type.Name(s.type)
    rows.append(
        f"<tr><td class='l'>{html.escape(split)}</td>"
        f"<td class='l'>{html.escape(name)}</td><td class='l'>{kind}</td>"
        f"<td>{c.num_non_missing:,}</td><td>{c.num_missing:,}</td>"
        f"<td>{c.avg_num_values:.2f}</td><td class='l'>{summary}</td>"
        + "".join(f"<td>{x}</td>" for x in spread[:3]) + "</tr>")
  return rows


def _share_chart(name: str, parts: Mapping[str, statistics_pb2.FeatureNameStatistics]
                 ) -> str:
  shares = {label: data_drift.value_shares(s) for label, s in parts.items()}
  first = next(iter(shares.values()))
  values = sorted(first, key=lambda v: -first[v])[:CHART_VALUES]
  fig, ax = plt.subplots(figsize=(5.2, 0.28 * len(values) + 1.2))
  height = 0.8 / max(len(shares), 1)
  for i, (label, share) in enumerate(shares.items()):
    ax.barh([y + i * height for y in range(len(values))],
            [share.get(v, 0.0) for v in values], height=height, label=label,
            color=COLORS.get(label))
  ax.set_yticks([y + height * (len(shares) - 1) / 2
                 for y in range(len(values))])
  ax.set_yticklabels(values, fontsize=8)
  ax.invert_yaxis()
  ax.set_xlabel("share of the feature's values")
  ax.set_title(f"{name}: value shares", fontsize=10)
  ax.legend(fontsize=8)
  return figure_svg(fig)


def _histogram_chart(name: str,
                     parts: Mapping[str, statistics_pb2.FeatureNameStatistics]
                     ) -> str:
  fig, ax = plt.subplots(figsize=(5.2, 2.6))
  for label, s in parts.items():
    h = next((h for h in s.num_stats.histograms
              if h.type == statistics_pb2.Histogram.STANDARD), None)
    if h is None or not h.buckets:
      continue
    total = sum(b.sample_count for b in h.buckets) or 1.0
    edges = [b.low_value for b in h.buckets] + [h.buckets[-1].high_value]
    ax.stairs([b.sample_count / total for b in h.buckets], edges,
              label=label, color=COLORS.get(label), linewidth=1.5)
  ax.set_ylabel("share of values")
  ax.set_title(f"{name}: histogram", fontsize=10)
  ax.legend(fontsize=8)
  return figure_svg(fig)


def charts(datasets: _Datasets,
           previous_train: Optional[statistics_pb2.DatasetFeatureStatistics]
           ) -> list[str]:
  """One chart per numeric feature and per string feature with few values."""
  by_split = {split: statistics_gen.feature_stats(d)
              for split, d in datasets.items()}
  if previous_train is not None:
    by_split[PREVIOUS] = statistics_gen.feature_stats(previous_train)
  reference = by_split.get("train") or next(iter(by_split.values()), {})
  out = []
  for name, s in sorted(reference.items()):
    parts = {label: feats[name] for label, feats in by_split.items()
             if name in feats and
             data_drift.is_categorical(feats[name]) ==
             data_drift.is_categorical(s)}
    if data_drift.is_categorical(s):
      if 0 < s.string_stats.unique <= CHART_MAX_UNIQUE:
        out.append(_share_chart(name, parts))
    elif s.num_stats.common_stats.tot_num_values:
      out.append(_histogram_chart(name, parts))
  return out


def section(datasets: _Datasets, result: Mapping[str, Any],
            previous_train: Optional[statistics_pb2.DatasetFeatureStatistics]
            = None) -> str:
  """The data section's HTML (a fragment, under the page's styles)."""
  anomalies = result["anomalies"]
  baseline = result.get("baseline")
  parts = ["<h2 id='data'>Data validation</h2>"]
  examples = ", ".join(f"{split} {d.num_examples:,} examples"
                       for split, d in sorted(datasets.items()))
  against = (f"drift against {html.escape(baseline['why'])} "
             f"<code>{html.escape(baseline['run_id'] or baseline['uri'])}"
             "</code>" if baseline else
             "no earlier statistics to measure drift against")
  blocking = ", ".join(result.get("blocking_kinds", [])) or "none"
  parts.append(f"<p>{examples}; {against}. Blocking kinds: {blocking}.</p>")
  if anomalies:
    parts.append(
        f"<p id='data-anomalies-count'><b>{len(anomalies)} anomal"
        f"{'y' if len(anomalies) == 1 else 'ies'}</b>, {result['blocking']} "
        "blocking.</p><table id='data-anomalies'><tr><th class='l'>split</th>"
        "<th class='l'>feature</th><th class='l'>kind</th><th class='l'>"
        "anomaly</th><th>blocks the push</th></tr>")
    for a in anomalies:
      parts.append(
          f"<tr class='{'fail' if a['blocking'] else ''}'><td class='l'>"
          f"{html.escape(a['split'])}</td><td class='l'>"
          f"{html.escape(a['feature'])}</td><td class='l'>{a['kind']}</td>"
          f"<td class='l'>{html.escape(a['description'])}</td>"
          f"<td>{'yes' if a['blocking'] else 'no'}</td></tr>")
    parts.append("</table>")
  else:
    parts.append("<p id='data-anomalies-count'><b>No anomalies.</b></p>")
  distances = result.get("distances", {})
  names = sorted({n for d in distances.values() for n in d})
  if names:
    parts.append("<table id='data-distances'><tr><th class='l'>feature</th>"
                 "<th class='l'>metric</th><th>drift</th><th>threshold</th>"
                 "<th>skew (train vs eval)</th><th>threshold</th></tr>")
    for n in names:
      cells = []
      metric = ""
      for kind in ("drift", "skew"):
        d = distances.get(kind, {}).get(n)
        if d is None:
          cells += ["—", "—"]
          continue
        metric = d["metric"]
        over = d["threshold"] is not None and d["value"] > d["threshold"]
        value = f"<b>{d['value']:.4f}</b>" if over else f"{d['value']:.4f}"
        cells += [value, "ignored" if d["threshold"] is None
                  else f"{d['threshold']:g}"]
      parts.append(f"<tr><td class='l'>{html.escape(n)}</td><td class='l'>"
                   f"{metric.replace('_', ' ')}</td>"
                   + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    parts.append("</table>")
  parts.append("<h3>Features</h3><table id='data-features'><tr>"
               "<th class='l'>split</th><th class='l'>feature</th>"
               "<th class='l'>type</th><th>present</th><th>missing</th>"
               "<th>values per example</th><th class='l'>summary</th>"
               "<th>min</th><th>median</th><th>max</th></tr>")
  for split, d in sorted(datasets.items()):
    parts.extend(_feature_rows(split, d))
  parts.append("</table><div class='charts'>")
  parts.extend(f"<div class='chart'>{svg}</div>"
               for svg in charts(datasets, previous_train))
  parts.append("</div>")
  return "\n".join(parts)


_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Data validation — {run_id}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:24px;max-width:1100px;color:#222}}
h2{{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}}
table{{border-collapse:collapse;font-size:13px;margin:8px 0}}
td,th{{border:1px solid #ddd;padding:4px 8px;text-align:right}}
th{{background:#f5f5f5}} td.l,th.l{{text-align:left}} tr.fail td{{background:#fdecea}}
.charts{{display:flex;flex-wrap:wrap;gap:16px}} .chart svg{{max-width:100%;height:auto}}
</style></head><body>
<h1>Data validation — run <code>{run_id}</code></h1>
{body}
</body></html>
"""


def write_page(path: str, run_id: str, fragment: str) -> None:
  """The section as a page of its own, and the fragment beside it."""
  with open(path, "w", encoding="utf-8") as f:
    f.write(_PAGE.format(run_id=html.escape(run_id), body=fragment))
  with open(os.path.join(os.path.dirname(path), FRAGMENT_FILE), "w",
            encoding="utf-8") as f:
    f.write(fragment)
