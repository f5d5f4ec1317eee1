"""Example explanations in the validation report: why the candidate model
recommends what it does to a few eval users.

A reviewer deciding whether to push a model reads its metrics; a few of its
answers to "why this item?" (the model's `explain` signature,
trainer/explain.py) show whether those metrics come from sensible reasons:
which tasks carried the score, which history items and interests it rests
on, whether the item was known or cold. For a few eval users, chosen with
the Evaluator's seed, the first item `recommend` returns is explained. A
model without the signature (exported before it existed) gets no section.
"""

from __future__ import annotations

import itertools
import random
from typing import Any, Mapping, Sequence

import jinja2

from components import artifact_readers
from contracts import records as r

SIGNATURE = "explain"
# Eval records read to pick users from: the first ones suffice, and reading
# the whole split of a large dataset for three users would not.
_SCAN = 5000


def sample_users(examples_uri: str, n: int, seed: int) -> list[str]:
  """`n` distinct eval users, drawn with `seed` from the split's first
  records, in sorted order."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  users = set()
  for record in itertools.islice(
      artifact_readers.read_examples(examples_uri, "eval"), _SCAN):
    example = tf.train.Example.FromString(record)
    users.add(example.features.feature[r.USER_ID].bytes_list.value[0]
              .decode())
  return sorted(random.Random(seed).sample(sorted(users), min(n, len(users))))


def _value(v: Any) -> Any:
  if isinstance(v, bytes):
    return v.decode("utf-8", errors="replace")
  return v.item() if hasattr(v, "item") else v


def explain_examples(model_dir: str, users: Sequence[str]
                     ) -> list[dict[str, Any]]:
  """For each user, the first recommended item and the model's `explain`
  answer for it ({user, item_id, title, answer}); [] without the signature."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  model = tf.saved_model.load(model_dir)
  if SIGNATURE not in model.signatures or not users:
    return []
  top = model.signatures["recommend"](user_id=tf.constant(list(users)))
  items = [row[0] for row in top["item_ids"].numpy()]
  titles = [_value(row[0]) for row in top["titles"].numpy()]
  answer = model.signatures[SIGNATURE](user_id=tf.constant(list(users)),
                                       item_id=tf.constant(items))
  answer = {k: v.numpy() for k, v in answer.items()}
  out = []
  for n, user in enumerate(users):
    row = {k: v[n] for k, v in answer.items()}
    out.append({"user": user, "item_id": _value(items[n]), "title": titles[n],
                "answer": {k: ([_value(x) for x in v] if v.ndim else _value(v))
                           for k, v in row.items()}})
  return out


def _pairs(names: Sequence[str], values: Sequence[float],
           percent: bool) -> str:
  shown = [(a, b) for a, b in zip(names, values) if a]
  if not shown:
    return "none"
  return ", ".join(f"{a} ({b:.0%})" if percent else f"{a} ({b:.2f})"
                   for a, b in shown)


def rows(examples: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
  """What the report shows of each example, as text cells."""
  out = []
  for e in examples:
    a = e["answer"]
    terms = sorted(k for k in a if k.startswith("contribution_"))
    share = a.get("item_content_share", -1.0)
    out.append({
        "user": e["user"] + ("" if a.get("user_known") else " (unknown)"),
        "item": f"{e['item_id']} {e['title']}".strip(),
        "score": f"{a['score']:.3f} = " + " + ".join(
            f"{k[len('contribution_'):]} {a[k]:.3f}" for k in terms),
        "history": _pairs(a.get("history_item_ids", []),
                          a.get("history_similarities", []), False),
        "interests": _pairs(a.get("interest_categories", []),
                            a.get("interest_shares", []), True),
        "item_side": ("trained on" if a.get("item_known") else "cold") + (
            "" if share < 0 else f", {share:.0%} content"),
        "experts": "; ".join(
            f"{k[len('gate_'):]}: " + " ".join(f"{w:.2f}" for w in a[k])
            for k in sorted(a) if k.startswith("gate_")) or "—",
    })
  return out


_SECTION = jinja2.Environment(autoescape=True).from_string("""
<h2>Why these items</h2>
<p>The candidate's own answer (its <code>explain</code> signature) for the
first item it recommends to a few eval users: the fused score and the task
terms it adds up from, the user's history items nearest the item (cosine of
the embeddings), the categories most of the history falls in, whether the
model was trained on the item and how much of its embedding is content, and
the weight each ranking task gave each shared expert.</p>
<table><tr>{% for c in columns %}<th class="l">{{ c }}</th>{% endfor %}</tr>
{% for row in rows %}<tr>{% for k in keys %}<td class="l">{{ row[k] }}</td>\
{% endfor %}</tr>
{% endfor %}</table>
""")
_COLUMNS = {"user": "user", "item": "item", "score": "score",
            "history": "because of", "interests": "interests",
            "item_side": "item", "experts": "experts"}


def html_section(examples: Sequence[Mapping[str, Any]]) -> str:
  """The report's section; "" without examples."""
  if not examples:
    return ""
  return _SECTION.render(rows=rows(examples), keys=list(_COLUMNS),
                         columns=list(_COLUMNS.values()))
