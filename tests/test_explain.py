"""The `explain` signature (trainer/explain.py) on the shared small run's
model: the fused score and its task terms, the history and interests it
cites, the experts' gates, and what it says of users and items the model
does not know."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from contracts import model_layout



@pytest.fixture(scope="module")
def served(small_run):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from trainer import refresh_state  # pylint: disable=g-import-not-at-top
  export_dir = model_layout.saved_model_dir(small_run.artifacts.model)
  return (tf.saved_model.load(export_dir),
          refresh_state.load_state(export_dir))


def _users(state):
  """Five users with a history in the model."""
  return sorted(u for u, h in state["histories"].items() if h)[:5]


def _explain(model, users, items):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  out = model.signatures["explain"](user_id=tf.constant(users),
                                    item_id=tf.constant(items))
  return {k: v.numpy() for k, v in out.items()}


def _recommended(model, users):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  out = model.signatures["recommend"](user_id=tf.constant(users))
  return ([[i.decode() for i in row] for row in out["item_ids"].numpy()],
          out["scores"].numpy())


def test_the_score_is_recommends_and_its_terms_add_up(served):
  model, state = served
  USERS = _users(state)  # noqa: N806
  lists, scores = _recommended(model, USERS)
  users = [u for u, row in zip(USERS, lists) for _ in row]
  items = [i for row in lists for i in row]
  got = _explain(model, users, items)
  np.testing.assert_allclose(got["score"], scores.reshape(-1), rtol=1e-5,
                             atol=1e-6)
  terms = [k for k in got if k.startswith("contribution_")]
  assert terms == [f"contribution_{t}" for t in
                   state["fusion"]["tasks"]] or sorted(terms) == sorted(
                       f"contribution_{t}" for t in state["fusion"]["tasks"])
  total = np.zeros_like(got["score"])
  for t in state["fusion"]["tasks"]:  # fuse()'s order
    total = total + got[f"contribution_{t}"]
  np.testing.assert_array_equal(total, got["score"])
  # Each returned item's rank is its place in the list (1 = first).
  k = len(lists[0])
  assert got["rank"].tolist() == list(range(1, k + 1)) * len(USERS)


def test_history_items_come_from_the_users_history(served):
  model, state = served
  USERS = _users(state)  # noqa: N806
  catalog = state["items"]["item_id"]
  items = [catalog[n * 37 % len(catalog)] for n in range(len(USERS))]
  got = _explain(model, USERS, items)
  for n, user in enumerate(USERS):
    cited = [i.decode() for i in got["history_item_ids"][n] if i]
    history = set(state["histories"].get(user, []))
    assert cited and set(cited) <= history, (user, cited)
    sims = got["history_similarities"][n][:len(cited)]
    assert all(-1.0 <= s <= 1.0 for s in sims)
    assert list(sims) == sorted(sims, reverse=True)


def test_interests_are_the_shares_of_the_history_by_category(served):
  model, state = served
  USERS = _users(state)  # noqa: N806
  categories = dict(zip(state["items"]["item_id"],
                        state["items"]["categories"]))
  got = _explain(model, USERS, [state["items"]["item_id"][0]] * len(USERS))
  for n, user in enumerate(USERS):
    history = [i for i in state["histories"].get(user, [])
               if i in categories]
    counts = collections.Counter(c for i in history for c in categories[i])
    names = [c.decode() for c in got["interest_categories"][n] if c]
    shares = got["interest_shares"][n][:len(names)]
    assert names, user
    for name, share in zip(names, shares):
      assert share == pytest.approx(counts[name] / len(history)), name
    assert shares[0] == pytest.approx(max(counts.values()) / len(history))


def test_each_ranking_task_reports_its_gate_over_the_experts(served):
  model, state = served
  USERS = _users(state)  # noqa: N806
  got = _explain(model, USERS, [state["items"]["item_id"][1]] * len(USERS))
  gates = {k: v for k, v in got.items() if k.startswith("gate_")}
  assert gates  # the small run's shared layers are MMoE
  for name, gate in gates.items():
    np.testing.assert_allclose(gate.sum(axis=1), 1.0, rtol=1e-5)
    assert (gate >= 0).all(), name


def test_unknown_users_and_items_say_so(served):
  model, state = served
  trained = state["items"]["item_id"][
      state["items"]["added_at"].index(0)]
  user = _users(state)[0]
  got = _explain(model, ["__nobody__", user, user],
                 [trained, "__no_such_item__", trained])
  assert got["user_known"].tolist() == [False, True, True]
  assert got["item_known"].tolist() == [True, False, True]
  # Nobody's history: nothing to cite, no interests.
  assert [i.decode() for i in got["history_item_ids"][0]] == ["", "", ""]
  assert [c.decode() for c in got["interest_categories"][0]] == ["", "", ""]
  assert np.isfinite(got["score"]).all()
  # Without LM text the tower has no gate between id and content.
  assert got["item_content_share"].tolist() == [-1.0, -1.0, -1.0]


def test_the_validation_report_explains_a_few_eval_users(small_run):
  import json  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top
  evaluation = small_run.artifacts.evaluation
  with open(os.path.join(evaluation, "metrics.json")) as f:
    examples = json.load(f)["explanations"]
  assert len(examples) == 3  # evaluator.explained_users' default
  assert len({e["user"] for e in examples}) == 3
  for e in examples:
    answer = e["answer"]
    assert answer["rank"] == 1  # the first item `recommend` returned
    terms = [v for k, v in answer.items() if k.startswith("contribution_")]
    assert sum(terms) == pytest.approx(answer["score"], abs=1e-5)
  with open(os.path.join(evaluation, "report.html")) as f:
    html = f.read()
  assert "<h2>Why these items</h2>" in html
  for e in examples:
    assert f'<td class="l">{e["item_id"]} ' in html


def test_an_explanation_row_reads_as_text_and_is_escaped():
  from components import explanations  # pylint: disable=g-import-not-at-top
  example = {"user": "u<1>", "item_id": "i9", "title": "Heat & Ice",
             "answer": {"score": 1.5, "contribution_retrieval": 1.0,
                        "contribution_like": 0.5, "rank": 1,
                        "user_known": True, "item_known": False,
                        "item_content_share": 1.0,
                        "history_item_ids": ["i2", ""],
                        "history_similarities": [0.912, 0.0],
                        "interest_categories": ["Drama", ""],
                        "interest_shares": [0.5, 0.0],
                        "gate_like": [0.25, 0.75]}}
  (row,) = explanations.rows([example])
  assert row == {"user": "u<1>", "item": "i9 Heat & Ice",
                 "score": "1.500 = like 0.500 + retrieval 1.000",
                 "history": "i2 (0.91)", "interests": "Drama (50%)",
                 "item_side": "cold, 100% content",
                 "experts": "like: 0.25 0.75"}
  html = explanations.html_section([example])
  assert "u&lt;1&gt;" in html and "Heat &amp; Ice" in html
  assert explanations.html_section([]) == ""
