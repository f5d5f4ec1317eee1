"""components.report: the validation report's tables and verdict."""

import math
import re

import pytest

from components import report

CHECKS = [
    {"metric": "recall_at_20", "check": "beats popularity", "value": 0.25,
     "op": ">", "bound": 0.125, "passed": True},
    {"metric": "rmse", "check": "<script>", "value": 1.5, "op": "<",
     "bound": 1.0, "passed": False},
]
OVERALL = {
    "candidate": {"recall_at_10": 0.2, "recall_at_20": 0.25, "rmse": 1.5,
                  "users": 7, "example_count": 100},
    "popularity": {"recall_at_10": 0.1, "recall_at_20": 0.125},
    "serving": {},
}
RETRIEVAL = {
    "candidate": {
        "activity:10-49": {"users": 3, "recall_at_20": 0.5},
        "activity:2-9": {"users": 2, "recall_at_20": 0.25},
        "all": {"users": 7, "recall_at_20": 0.25, "ndcg_at_20": 0.125},
        "activity:50+": {"users": 2, "recall_at_20": 0.75},
    },
    "popularity": {"all": {"recall_at_20": 0.125}},
}
_slice_rows = report._slice_rows  # pylint: disable=protected-access
RANKING = {"candidate": {"all": {"rmse": 1.5, "auc": 0.75},
                         "genre:Drama": {"rmse": 1.25}}}


@pytest.mark.parametrize("value, text", [
    (0.123456, "0.1235"), (1.0, "1.0000"), (7, "7"), ("", ""), (None, "None")])
def test_fmt(value, text):
  assert report._fmt(value) == text  # pylint: disable=protected-access


def test_slice_rows_put_all_first_then_kinds_with_numeric_ranges_in_order():
  columns = ["recall_at_20", "ndcg_at_20", "popularity recall_at_20", "rmse"]
  rows = _slice_rows(RETRIEVAL, RANKING, columns)
  assert [r["name"] for r in rows] == [
      "all", "activity:2-9", "activity:10-49", "activity:50+", "genre:Drama"]
  by_name = {r["name"]: r for r in rows}
  assert by_name["all"]["users"] == 7
  assert by_name["all"]["cells"] == {
      "recall_at_20": 0.25, "ndcg_at_20": 0.125,
      "popularity recall_at_20": 0.125, "rmse": 1.5}
  # A ranking-only slice: no users, no retrieval cells.
  assert by_name["genre:Drama"]["users"] == ""
  assert by_name["genre:Drama"]["cells"] == {
      "recall_at_20": "", "ndcg_at_20": "", "popularity recall_at_20": "",
      "rmse": 1.25}
  assert by_name["activity:50+"]["cells"]["recall_at_20"] == 0.75


def test_slice_rows_without_slices():
  assert _slice_rows({}, {}, ["rmse"]) == []


def test_write_reports_html_and_markdown(tmp_path):
  paths = report.write_reports(
      str(tmp_path), run_id="run-1", model_uri="/m", verdict="NOT_BLESSED",
      checks=CHECKS, overall=OVERALL, retrieval=RETRIEVAL, ranking=RANKING,
      calibration=[{"lower": 0.0, "upper": 0.5, "count": 4.0,
                    "mean_predicted": 0.25, "observed_rate": 0.5}],
      history={"retrieval_loss": [2.0, 1.0]}, infra=None, ks=[10, 20],
      serving_desc="none")
  html = open(paths["html"]).read()
  md = open(paths["markdown"]).read()
  assert '<span class="verdict NOT_BLESSED" id="verdict">NOT_BLESSED' in html
  # Values are escaped in HTML: a check's text cannot inject markup.
  assert "<script>" not in html and "&lt;script&gt;" in html
  assert "<b>Failed checks:</b> rmse (&lt;script&gt;)" in html
  assert "<p>not run</p>" in html
  # The bucket's count, and the Wilson interval of 2 likes in 4 rows:
  # (p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n) = 0.5 ± 0.35.
  assert ("<td>0.0–0.5</td><td>4</td><td>0.2500</td><td>0.5000<br>"
          '<span class="ci">[0.1500, 0.8500]</span></td>') in html
  # Slices at the middle K: recall_at_20 of ks [10, 20].
  assert "<th>recall_at_20</th><th>ndcg_at_20</th>" in html
  assert md.startswith("# Model validation: NOT_BLESSED\n")
  assert ("| rmse | <script> | 1.5000 |  | < | 1.0000 | **FAIL** |" in md)
  assert ("| recall_at_20 | beats popularity | 0.2500 |  | > | 0.1250 | pass |"
          in md)
  # Overall: the models with metrics (serving has none), without counts.
  headers = re.findall(r"^\| metric \| (.*)$", md, re.M)
  assert headers[-1] == "candidate | popularity | "
  assert "| recall_at_10 | 0.2000 | 0.1000 | " in md
  assert "example_count" not in md and "| users |" not in md


def test_history_follows_run_records_not_the_folder_layout(tmp_path):
  """Earlier evaluations are found through run.json, wherever they live."""
  import json  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top

  def evaluation(directory, run_id, recall):
    os.makedirs(directory)
    with open(os.path.join(directory, "metrics.json"), "w") as f:
      json.dump({"run_id": run_id, "created_at": run_id, "verdict": "BLESSED",
                 "overall": {"candidate": {"recall_at_20": recall}}}, f)
    return str(directory)

  root = tmp_path / "root"
  # Run a's evaluation lives outside the usual <root>/<run>/Evaluator path;
  # run b reused it from the cache (same URI): one row, not two. Run c
  # failed before evaluating; "stray" is no run record at all.
  elsewhere = evaluation(tmp_path / "elsewhere" / "eval", "a", 0.125)
  evaluation(root / "stray" / "Evaluator" / "evaluation", "stray", 0.5)
  for run_id, uri in (("a", elsewhere), ("b", elsewhere), ("c", None)):
    os.makedirs(root / run_id, exist_ok=True)
    artifacts = {"Evaluator/evaluation": {"uri": uri}} if uri else {}
    with open(root / run_id / "run.json", "w") as f:
      json.dump({"run_id": run_id, "artifacts": artifacts}, f)
  current = {"run_id": "d", "created_at": "d", "verdict": "NOT_BLESSED",
             "overall": {"candidate": {"recall_at_20": 0.25}}}
  page = tmp_path / "history.html"
  assert report.write_history(str(page), str(root), current) == 2
  text = page.read_text()
  assert "<td>a</td>" in text and "<td>d</td>" in text
  assert "stray" not in text and "0.5000" not in text


def test_charts_never_mix_directions():
  groups = report.direction_groups([
      "click_auc", "click_log_loss", "click_calibration", "rating_rmse",
      "interest_recall_at_5", "watch_fraction_mae", "recall_at_20",
      "mean_popularity_at_10"])
  assert groups == [
      ("higher is better", ["click_auc", "interest_recall_at_5",
                            "recall_at_20"]),
      ("lower is better", ["click_log_loss", "rating_rmse",
                           "watch_fraction_mae", "mean_popularity_at_10"])]
  assert report.direction_groups(["click_calibration"]) == []


def test_report_shows_both_orders_every_task_and_each_calibration(tmp_path):
  tasks = [{"name": "click", "kind": "binary"},
           {"name": "watch_fraction", "kind": "regression"},
           {"name": "interest", "kind": "multilabel"}]
  overall = {
      "candidate": {"recall_at_20": 0.25, "graded_ndcg_at_20": 0.2,
                    "liked_recall_at_20": 0.3, "click_auc": 0.7,
                    "click_log_loss": 0.5, "click_calibration": 1.1,
                    "watch_fraction_rmse": 0.25, "watch_fraction_mae": 0.2,
                    "interest_auc": 0.65, "interest_recall_at_5": 0.6,
                    "users": 7, "liked_users": 4},
      "candidate_retrieval_order": {"recall_at_20": 0.5,
                                    "graded_ndcg_at_20": 0.125,
                                    "liked_recall_at_20": 0.25, "users": 7},
      "popularity": {"recall_at_20": 0.125},
  }
  buckets = [{"lower": 0.0, "upper": 0.5, "count": 4.0,
              "mean_predicted": 0.25, "observed_rate": 0.5}]
  paths = report.write_reports(
      str(tmp_path), run_id="run-2", model_uri="/m", verdict="BLESSED",
      checks=[], overall=overall, retrieval={}, ranking={},
      calibration={"click": buckets, "like": []}, history={}, infra=None,
      ks=[20], serving_desc="none", tasks=tasks,
      fusion={"fusion_tasks": ["retrieval", "click"],
              "fusion_weights": [1.0, 0.25]})
  html = open(paths["html"]).read()
  md = open(paths["markdown"]).read()
  # Fused against retrieval order, with the difference, in both reports.
  assert "fusion weights retrieval 1, click 0.25" in html
  assert ("| recall_at_20 | 0.2500 | 0.5000 | -0.2500 | higher |" in md)
  assert ("| graded_ndcg_at_20 | 0.2000 | 0.1250 | 0.0750 | higher |"
          in md)
  # Every task's metrics, each with its direction.
  assert "| click | binary | click_calibration | 1.1000 | closer to 1 |" in md
  assert ("| watch_fraction | regression | watch_fraction_rmse | 0.2500 | "
          "lower |") in md
  assert ("| interest | multilabel | interest_recall_at_5 | 0.6000 | "
          "higher |") in md
  # One calibration section per binary task that has buckets.
  assert "<h3>click</h3>" in html and "<h3>like</h3>" not in html
  assert "liked_users" not in md
  # Charts: retrieval, value-aware, fused vs retrieval, ranking x2.
  assert html.count("<svg") == 5 + 1  # and click's calibration


def test_history_reads_canonical_names_and_older_aliases():
  older = {"metrics": {"rmse": 0.9}}
  newer = {"metrics": {"rating_rmse": 0.8, "rmse": 0.8}}
  value = report._value  # pylint: disable=protected-access
  assert value(older["metrics"], "rating_rmse") == 0.9
  assert value(newer["metrics"], "rating_rmse") == 0.8
  assert math.isnan(value({}, "rating_rmse"))


def test_report_shows_how_the_fusion_weights_were_chosen(tmp_path):
  # Round 1: like 0 (declared) -> 0.5 (gain) -> 1.0 ties 0.5: stays 0.5.
  # Round 2: 0.0 is worse, 0.5 is kept, 1.0 ties again.
  curve = [{"round": 1, "task": "like", "weight": w, "objective": v}
           for w, v in ((0.0, 0.10), (0.5, 0.12), (1.0, 0.12))]
  curve += [{"round": 2, "task": "like", "weight": w, "objective": v}
            for w, v in ((0.0, 0.10), (0.5, 0.12), (1.0, 0.12))]
  search = {"objective": "graded_ndcg_at_20", "users": 40,
            "held_out_items": 90, "refit": True,
            "declared_weights": {"retrieval": 1.0, "like": 0.0},
            "retrieval_only_objective": 0.1, "chosen_objective": 0.12,
            "curve": curve}
  paths = report.write_reports(
      str(tmp_path), run_id="run-3", model_uri="/m", verdict="BLESSED",
      checks=[], overall={"candidate": {"recall_at_20": 0.2, "users": 5}},
      retrieval={}, ranking={}, calibration={}, history={}, infra=None,
      ks=[20], serving_desc="none",
      tasks=[{"name": "like", "kind": "binary"}],
      fusion={"fusion_tasks": ["retrieval", "like"],
              "fusion_weights": [1.0, 0.5], "search": search})
  html = open(paths["html"]).read()
  assert "How the fusion weights were chosen" in html
  assert "40 users" in html and "refit on the whole train split" in html
  rows = html.split('<table id="search">')[1].split("</table>")[0]
  assert rows.count("<b>0.1200</b>") == 2  # 0.5 kept in both rounds
  assert "<td><b>0.1200</b></td><td>0.1200</td>" in rows
  md = open(paths["markdown"]).read()
  assert ("Fusion weights chosen on 40 validation users of the train split: "
          "graded_ndcg_at_20 0.1000 in the retrieval order, 0.1200") in md


def test_report_shows_intervals_paired_differences_and_bucket_counts(
    tmp_path):
  """What the Evaluator bootstrapped reaches both reports: intervals in the
  checks and tables, each paired difference with its outcome; calibration
  buckets below the minimum merged, with their counts."""
  checks = [{"metric": "recall_at_20",
             "check": "beats popularity (paired bootstrap, 95%)",
             "value": 0.0125, "op": ">", "bound": 0.0, "passed": False,
             "interval": {"of": "candidate − popularity", "low": -0.0025,
                          "high": 0.03, "level": 0.95}}]
  overall = {"candidate": {"recall_at_20": 0.25, "like_auc": 0.75,
                           "users": 9},
             "popularity": {"recall_at_20": 0.2375},
             "serving": {"recall_at_20": 0.125, "like_auc": 0.5}}
  intervals = {"candidate": {"recall_at_20": [0.125, 0.375],
                             "like_auc": [0.625, 0.875]},
               "popularity": {"recall_at_20": [0.1, 0.3]}}
  differences = {
      "popularity": {"recall_at_20": {"difference": 0.0125,
                                      "interval": [-0.0025, 0.03],
                                      "units": 9}},
      "serving": {"recall_at_20": {"difference": 0.125,
                                   "interval": [0.0625, 0.25], "units": 9}}}
  # Counts 1, 3, 40, 2: the first two join the third; the last, short at
  # the top, joins the one below it.
  buckets = [{"lower": b / 10, "upper": (b + 1) / 10, "count": n,
              "mean_predicted": b / 10 + 0.05, "observed_rate": rate}
             for b, n, rate in ((0, 1.0, 1.0), (1, 3.0, 0.0),
                                (5, 40.0, 0.5), (9, 2.0, 1.0))]
  paths = report.write_reports(
      str(tmp_path), run_id="run-4", model_uri="/m", verdict="NOT_BLESSED",
      checks=checks, overall=overall, retrieval={}, ranking={},
      calibration={"like": buckets}, history={}, infra=None, ks=[20],
      serving_desc="/serving/1",
      tasks=[{"name": "like", "kind": "binary"}], intervals=intervals,
      differences=differences,
      bootstrap={"resamples": 1000, "confidence": 0.95, "seed": 7},
      calibration_min_count=10)
  html = open(paths["html"]).read()
  md = open(paths["markdown"]).read()
  assert ("| recall_at_20 | beats popularity (paired bootstrap, 95%) | "
          "0.0125 | candidate − popularity [-0.0025, 0.0300] (95%) | > | "
          "0.0000 | **FAIL** |") in md
  assert "95% percentile bootstrap, 1,000 resamples (seed 7)" in md
  assert ("| recall_at_20 | 0.2500 [0.1250, 0.3750] | 0.1250 | "
          "0.2375 [0.1000, 0.3000] | ") in md
  assert ("| recall_at_20 | popularity | +0.0125 | [-0.0025, 0.0300] | 9 | "
          "higher | no clear difference |") in md
  assert ("| recall_at_20 | serving | +0.1250 | [0.0625, 0.2500] | 9 | "
          "higher | candidate better |") in md
  assert ("| like | binary | like_auc | 0.7500 [0.6250, 0.8750] | 0.5000 | "
          "higher |") in md
  assert ('<td>0.2500<br><span class="ci">[0.1250, 0.3750]</span></td>'
          in html)
  table = html.split('<table id="differences">')[1].split("</table>")[0]
  assert table.count("<tr>") == 3  # header, popularity, serving
  # Calibration: 1 + 3 + 40 reach the minimum; the 2 left at the top join
  # them: one bucket 0.0-1.0 of 46 rows, its count in the table and chart.
  calib = html.split("<h2>Calibration</h2>")[1]
  assert "fewer than 10 examples are merged" in calib
  rows = re.findall(r"<tr><td>([0-9.–]+)</td><td>(\d+)</td>", calib)
  assert rows == [("0.0–1.0", "46")]
  assert "n=46" in calib
  # retrieval; ranking higher- and lower-is-better; calibration.
  assert html.count("<svg") == 4
