"""Exports the trained model as a SavedModel with TF Serving signatures.

The SavedModel answers from raw values only: it holds the TFT transform graph,
the item catalog (ids, titles and the raw features the transform needs), the
user profiles and each user's latest history (their last consumed items in
the training data), so a client sends a user id or an item id, never a vocab
index or a feature vector. `recommend` scores the whole catalog by brute force
(a matmul and an exact top-k, trainer/topk.py: only core TensorFlow ops,
since TF Serving ships no ScaNN ops) against candidate embeddings computed
once at export, through the same code path `serving_default` uses for one
item, so the two always agree.

Signatures (their names and outputs are the project's API):
  serving_default(user_id, item_id) -> affinity and one output per task:
      a ranking task's prediction for the pair (`rating`, `p_like`, ...), a
      multi-label task's probabilities for the user ([N, labels]).
  recommend(user_id) -> [B, top_k] item_ids, titles, scores (the fused
      score the list is ordered by), retrieval_scores (the dot product that
      picked the candidates), contribution_<task> for each fused task
      (they add up to `scores`), one output per ranking task (the items'
      predictions: `rating`, `p_like`, ...) and because_item_ids: the item
      of the user's history closest to each returned item (cosine of the
      candidate embeddings), "" without one: a short "because you watched
      ..." explanation.
      Two stages: the best `serving.ranking.candidates` items by retrieval
      score, then every ranking head scores them and the fusion
      (trainer/fusion.py) orders them. With `serving.freshness.bonus` > 0
      a new item's retrieval score includes the freshness bonus
      (trainer/freshness.py).
  recommend_excluding(user_id, exclude_item_ids, k) -> the same, [B, k]:
      k up to the configured max_k, never returning an excluded item (e.g.
      what the user has already seen); exclude_item_ids is [B, M], padded
      with "". A separate signature because TF Serving requires every input
      of a signature, and plain `recommend` should stay one-argument.
  recommend_weighted(user_id, exclude_item_ids, k, fusion_weights) -> the
      same, fused with the request's weights: [B, T] float32, one row per
      user, in the model card's `fusion_tasks` order, each >= 0 and finite
      (else INVALID_ARGUMENT naming fusion_weights). A product team tunes
      the fusion without a new export; weights 1, 0, ..., 0 give the
      retrieval order.
  recommend_at(user_id, exclude_item_ids, k, fusion_weights, timestamp) ->
      recommend_weighted as of timestamp [B] (Unix seconds) rather than the
      request's time: the hour and weekday the query tower and the ranking
      heads read. What an offline evaluation asks (as of each user's first
      eval event), so a model's metrics do not depend on the hour it is
      evaluated at.
  explain(user_id, item_id) -> why the item ranks where it does for the
      user (trainer/explain.py): score and contribution_<task> (they add
      up), rank among the user's candidates, retrieval_score and the ranking
      heads' predictions; history_item_ids / history_similarities,
      interest_categories / interest_shares [B, 3]; gate_<task> (the
      experts each ranking task relied on); item_content_share,
      item_known, user_known.
  fusion(user_id) -> tasks [B, T] (the fused tasks, in fusion_weights'
      order) and weights [B, T] (the model's own): what a client reads
      before calling recommend_weighted.
  predict_examples(examples) -> as serving_default. Reads user_id, item_id
      and, if present, timestamp (the event time; the request time
      otherwise) and history_item_ids (the user's history at that event;
      the latest known one otherwise).
  embed_user(user_id) -> embedding;  embed_item(item_id) -> embedding
  embed_user_at(user_id, timestamp) -> embed_user with the context (hour,
      weekday) of each row's timestamp instead of the request's.
Ranking heads and the query tower see the time of the request as the event
time. Unknown users get an empty history and OOV ids; unknown items OOV ids
and no content features.

With LM item text (TextEmbedder), the catalog's vectors are a variable of
the module, gathered by catalog row into the candidate tower's features, so
serving runs no language model and an item outside the item vocabulary (a
cold item, or one added by `mtrec catalog refresh`, trainer/refresh.py) is
indexed through its content.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from contracts import features as F
from contracts import model_layout
from contracts import records as r
from components import schema
from components import time_features
from trainer import explain as explain_lib
from trainer import freshness as freshness_lib
from trainer import fusion as fusion_lib
from trainer import model as model_lib
from trainer import new_item_match as new_item_match_lib
from trainer import topk

_INDEX_BATCH = 4096
_RANKING_KINDS = ("regression", "binary")


def _empty_sparse(n: tf.Tensor, dtype=tf.string) -> tf.SparseTensor:
  return tf.SparseTensor(tf.zeros([0, 2], tf.int64), tf.zeros([0], dtype),
                         tf.stack([tf.cast(n, tf.int64), 0]))


def _split_categories(joined: tf.Tensor) -> tf.SparseTensor:
  parts = tf.strings.split(joined, sep=r.CATEGORY_SEPARATOR)
  return tf.ragged.boolean_mask(parts, tf.strings.length(parts) > 0).to_sparse()


def _choose_rows(first: tf.RaggedTensor, second: tf.RaggedTensor
                 ) -> tf.RaggedTensor:
  """Row i of `first` where it is not empty, else row i of `second`."""
  use_second = first.row_lengths() == 0
  kept = tf.ragged.boolean_mask(
      second, second.with_flat_values(
          tf.repeat(use_second, second.row_lengths())))
  return tf.concat([first, kept], axis=1)


class ServingModule(tf.Module):
  """Everything the signatures need, tracked so that it is saved."""

  def __init__(self, model: model_lib.MultiTaskModel,
               tft_output: tft.TFTransformOutput,
               items: Mapping[str, Sequence[Any]],
               users: Mapping[str, Sequence[Any]], user_features: Sequence[str],
               top_k: int, max_k: int = 100,
               histories: Optional[Mapping[str, Sequence[str]]] = None,
               item_text: Optional[Mapping[str, Any]] = None,
               fusion: Optional[fusion_lib.FusionSpec] = None,
               freshness: Optional[Mapping[str, float]] = None,
               new_item_match: Optional[Mapping[str, float]] = None,
               liked: Optional[Mapping[str, Sequence[str]]] = None,
               history_ends: Optional[Mapping[str, int]] = None):
    """See the module docstring.

    Args:
      item_text: {"item_ids", "vectors", "has_text"}: the LM text embedding
        of catalog items (TextEmbedder), baked into the model so serving
        needs no language model; a catalog item without one gets the
        no-text fallback (zeros, has_text 0), as does an unknown item.
      fusion: the fused ranking stage (trainer/fusion.py); None: the
        retrieval order (every ranking weight 0) over max(100, max_k)
        candidates.
      new_item_match: serving.new_item_match's settings, with `liked`
        (user -> liked item ids) what new items are matched against
        (trainer/new_item_match.py); None or bonus 0: off.
      history_ends: each user's last history event's timestamp
        (data.latest_histories_with_ends). A request before it is answered
        with the query's "history runs past the request" mode
        (F.HISTORY_AHEAD); a user without one never is.
    """
    super().__init__()
    self.query_tower = model.query_tower
    self.candidate_tower = model.candidate_tower
    self.ranking_heads = model.ranking_heads
    self.query_heads = model.query_heads
    self.tft_layer = tft_output.transform_features_layer()
    self._user_features = list(user_features)
    self._has_history = F.HISTORY in tft_output.transformed_feature_spec()
    # (task name, output name, kind) and how to serve each task's output.
    self._tasks = [(t.task_name, t.output_name, t.kind) for t in model.tasks
                   if t.kind != "retrieval"]
    self._serve = {t.task_name: t.serve for t in model.tasks}
    # The model card's tasks (contracts/model_layout.MODEL_CARD_FILE), as
    # JSON: a plain string is no trackable that saving would walk into.
    self._card_tasks = json.dumps([
        {"name": t.task_name, "kind": t.kind,
         "label": getattr(t.task_config, "label", None),
         "output": None if t.kind == "retrieval" else t.output_name}
        for t in model.tasks])

    item_ids = tf.constant(items[r.ITEM_ID], tf.string)
    self.item_rows = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            item_ids, tf.range(len(items[r.ITEM_ID]), dtype=tf.int64)), -1)
    self.item_ids = tf.Variable(item_ids, trainable=False)
    self.item_titles = tf.Variable(items[r.TITLE], trainable=False,
                                   dtype=tf.string)
    self.item_years = tf.Variable(items[r.YEAR], trainable=False,
                                  dtype=tf.int64)
    self.item_categories = tf.Variable(
        [r.CATEGORY_SEPARATOR.join(c) for c in items[r.CATEGORIES]],
        trainable=False, dtype=tf.string)
    self.item_tags = tf.Variable(
        [r.CATEGORY_SEPARATOR.join(t) for t in items[r.TAGS]],
        trainable=False, dtype=tf.string)
    # When each item became new (trainer/freshness.py); kept in the
    # refresh state (items_added_at) so a refresh does not renew it.
    known_added_at = (dict(zip(items[r.ITEM_ID], items[freshness_lib.ADDED_AT]))
                      if freshness_lib.ADDED_AT in items else None)
    self.items_added_at = freshness_lib.added_at(
        items[r.ITEM_ID],
        [i.decode() for i in tft_output.vocabulary_by_name(F.ITEM_ID_VOCAB)],
        known_added_at, int(time.time()))
    self.item_added_at = tf.Variable(self.items_added_at, trainable=False)
    self.freshness = dict(freshness) if freshness else None
    # Each item's categories by index, for `explain`'s interests.
    names, values, splits = explain_lib.category_table(items[r.CATEGORIES])
    self.category_names = tf.Variable(names or [""], trainable=False,
                                      dtype=tf.string)
    self.num_categories = max(len(names), 1)
    self.item_category_values = tf.Variable(values, trainable=False,
                                            dtype=tf.int64)
    self.item_category_splits = tf.Variable(splits, trainable=False)
    self._text = bool(getattr(model.candidate_tower, "has_text", False))
    if self._text:
      vectors, has_text = align_item_text(items[r.ITEM_ID], item_text)
      self.item_text_vectors = tf.Variable(vectors, trainable=False)
      self.item_has_text = tf.Variable(has_text, trainable=False)
    self._init_users(users, histories or {}, history_ends or {}, [
        u.decode() for u in tft_output.vocabulary_by_name(F.USER_ID_VOCAB)])
    self.new_item_match = (dict(new_item_match) if new_item_match_lib
                           .settings_enabled(new_item_match) else None)
    values, splits = new_item_match_lib.ragged(self._match_new_items(
        items[r.ITEM_ID], item_text, liked or {}))
    self.match_values = tf.Variable(values, trainable=False)
    self.match_splits = tf.Variable(splits, trainable=False)
    self.top_k = min(top_k, len(items[r.ITEM_ID]))
    self.max_k = min(max(max_k, top_k), len(items[r.ITEM_ID]))
    if fusion is None:
      fusion = fusion_lib.build_spec(
          [t.task_config for t in model.tasks], {},
          {"label_means": {}}, max(100, self.max_k))
    self.fusion_spec = fusion
    self.candidates = min(max(fusion.candidates, self.max_k),
                          len(items[r.ITEM_ID]))
    # A variable: the fusion search sets it after the module is built.
    self.fusion_weights = tf.Variable(
        np.asarray(fusion.weights, np.float32), trainable=False)
    index = self._build_index(items[r.ITEM_ID])
    self.index = tf.Variable(index, trainable=False)
    # The same, dimension-major: the scoring matmul reads it without a
    # transpose, measured faster on CPU than transpose_b
    # (docs/design_measurements.md).
    self.index_by_dim = tf.Variable(np.ascontiguousarray(index.T),
                                    trainable=False)
    # The unit-length index the "because" explanations compare with;
    # normalizing the whole catalog on every request was a measurable share
    # of `recommend` (docs/design_measurements.md).
    norms = np.linalg.norm(index, axis=-1, keepdims=True)
    self.unit_index = tf.Variable(index / np.maximum(norms, 1e-12),
                                  trainable=False)
    # recommend's query, less the time of the request, for every row of
    # the user table (the last one: users the model does not know).
    # QueryTower.split_projection says why the two terms add up. A query
    # tower with history modes has a second table: the same users, their
    # history read as one that runs past the request.
    self.history_modes = self.query_tower.history_modes
    self.user_query_terms = tf.Variable(self._build_user_query_terms(0.0),
                                        trainable=False)
    if self.history_modes:
      self.user_query_terms_ahead = tf.Variable(
          self._build_user_query_terms(1.0), trainable=False)

  def _init_users(self, users: Mapping[str, Sequence[Any]],
                  histories: Mapping[str, Sequence[str]],
                  history_ends: Mapping[str, int],
                  vocabulary: Sequence[str] = ()) -> None:
    """User table: profiles, latest histories and when each ends; a last,
    empty row for users the model does not know.

    Every user of the id vocabulary has a row (an empty one without profile
    or history), so users that share a row share every query input, which
    is what lets `recommend` precompute the user term per row.
    """
    profile_ids = list(users.get(r.USER_ID, []))
    row_of = {u: i for i, u in enumerate(profile_ids)}
    user_ids = profile_ids + sorted(
        (set(histories) | set(vocabulary)) - set(row_of))
    self._table_user_ids = user_ids
    self.unknown_user_row = len(user_ids)  # the last, empty row
    # A table needs a key: without users, one that maps to the empty row.
    keys = user_ids or ["\x00"]
    self.user_rows = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(keys, tf.string),
            tf.range(len(keys), dtype=tf.int64)), len(user_ids))
    self.user_attributes = {
        name: tf.Variable(
            [users[name][row_of[u]] if u in row_of else "" for u in user_ids]
            + [""], trainable=False, dtype=tf.string)
        for name in self._user_features
    }
    lists = [list(histories.get(u, [])) for u in user_ids] + [[]]
    self.history_values = tf.Variable(
        tf.constant([i for h in lists for i in h], tf.string),
        trainable=False)
    self.history_splits = tf.Variable(
        np.cumsum([0] + [len(h) for h in lists]).astype(np.int64),
        trainable=False)
    never = np.iinfo(np.int64).min  # no timestamp comes before it
    self.history_ends = tf.Variable(np.array(
        [history_ends.get(u, never) if lists[n] else never
         for n, u in enumerate(user_ids)] + [never], np.int64),
                                    trainable=False)

  def _match_new_items(self, item_ids: Sequence[str],
                       item_text: Optional[Mapping[str, Any]],
                       liked: Mapping[str, Sequence[str]]
                       ) -> list[list[int]]:
    """Each user-table row's matched new items (catalog rows), the last
    (unknown users') row empty; every row empty with the policy off."""
    rows: list[list[int]] = [[] for _ in range(self.unknown_user_row + 1)]
    if not self.new_item_match:
      return rows
    if not self._text:
      raise ValueError("serving.new_item_match matches new items by their "
                       "LM text; the model reads none (text_embedder)")
    vectors, has_text = align_item_text(item_ids, item_text)
    matched = new_item_match_lib.match_catalog(
        self._table_user_ids, liked, item_ids, vectors, has_text,
        self.items_added_at > 0, self.new_item_match["threshold"],
        int(self.new_item_match["neighbors"]))
    return matched + [[]]

  def new_item_match_summary(self) -> Optional[dict[str, Any]]:
    """The policy's settings and what it matched (None when it is off)."""
    if not self.new_item_match:
      return None
    lengths = np.diff(self.match_splits.numpy())
    return dict(self.new_item_match, matched_pairs=int(lengths.sum()),
                users_matched=int((lengths > 0).sum()))

  def _history_runs_past(self, user_row: tf.Tensor,
                         timestamp: tf.Tensor) -> tf.Tensor:
    """Whether each user row's served history has an event after the
    timestamp: the one rule F.HISTORY_AHEAD follows at serving time."""
    return timestamp < tf.gather(self.history_ends, user_row)

  def _histories(self, user_row: tf.Tensor) -> tf.RaggedTensor:
    table = tf.RaggedTensor.from_row_splits(
        self.history_values, self.history_splits, validate=False)
    return tf.gather(table, user_row)

  # Raw values -> transformed features, exactly as in training.
  def transform(self, user_id: tf.Tensor, item_id: tf.Tensor,
                timestamp: tf.Tensor,
                history: Optional[tf.RaggedTensor] = None,
                user_side: bool = True) -> dict[str, tf.Tensor]:
    """The transformed features of raw (user, item, time) rows.

    With user_side False the user's profile and history are left empty:
    for callers that take the query from user_query_terms and need only
    the item's features and the time. With it, F.HISTORY_AHEAD says which
    rows read a served history that runs past their timestamp (a row
    given its own `history` never does: that is what came before it).
    """
    n = tf.shape(user_id)[0]
    item_row = self.item_rows.lookup(item_id)
    item_known = item_row >= 0
    item_row = tf.maximum(item_row, 0)

    def item_value(table, default):
      return tf.where(item_known, tf.gather(table, item_row), default)

    raw = {
        r.USER_ID: user_id,
        r.ITEM_ID: item_id,
        r.TIMESTAMP: timestamp,
        r.TITLE: item_value(self.item_titles, ""),
        r.YEAR: item_value(self.item_years, tf.constant(0, tf.int64)),
        r.CATEGORIES: _split_categories(item_value(self.item_categories, "")),
        r.TAGS: _split_categories(item_value(self.item_tags, "")),
        # Labels are inputs of the transform graph; at serving time unknown.
        r.RATING: tf.fill([n], float(r.MISSING_LABEL)),
        r.LIKE: tf.fill([n], tf.constant(r.MISSING_LABEL, tf.int64)),
        r.CLICK: tf.ones([n], tf.int64),
        r.WATCH_FRACTION: tf.fill([n], float(r.MISSING_LABEL)),
    }
    user_row = (self.user_rows.lookup(user_id) if user_side else
                # The last, empty row.
                tf.fill([n], tf.constant(len(self._table_user_ids), tf.int64)))
    for name in self._user_features:
      raw[schema.user_feature_key(name)] = tf.gather(
          self.user_attributes[name], user_row)
    if self._has_history:
      ahead = tf.zeros([n], tf.float32)
      if user_side:
        known = self._histories(user_row)
        served = tf.ones([n], tf.bool)
        if history is not None:
          served = history.row_lengths() == 0
          known = _choose_rows(history, known)
        raw[schema.HISTORY] = known.to_sparse()
        ahead = tf.cast(tf.logical_and(
            served, self._history_runs_past(user_row, timestamp)),
                        tf.float32)
      else:
        raw[schema.HISTORY] = _empty_sparse(n)
    feats = dict(self.tft_layer(raw))
    if self._has_history:
      feats[F.HISTORY_AHEAD] = ahead
    if self._text:
      feats[F.ITEM_TEXT_EMBEDDING] = tf.where(
          item_known[:, None], tf.gather(self.item_text_vectors, item_row),
          tf.zeros([], tf.float32))
      feats[F.ITEM_HAS_TEXT] = tf.where(
          item_known, tf.gather(self.item_has_text, item_row),
          tf.zeros([], tf.int64))
    return feats

  @staticmethod
  def _in_chunks(ids: Sequence[str],
                 compute: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
                 ) -> np.ndarray:
    """compute(ids, empty) over chunks of ids (a string tensor and a tensor
    of "" of the same length), concatenated."""
    chunks = []
    for start in range(0, len(ids), _INDEX_BATCH):
      chunk = tf.constant(ids[start:start + _INDEX_BATCH], tf.string)
      chunks.append(compute(chunk, tf.fill(tf.shape(chunk), "")).numpy())
    return np.concatenate(chunks, axis=0)

  def _build_index(self, item_ids: Sequence[str]) -> np.ndarray:
    def embed(ids, empty):
      return self.candidate_tower(
          self.transform(empty, ids, tf.zeros(tf.shape(ids), tf.int64)))
    return self._in_chunks(item_ids, embed)

  def _build_user_query_terms(self, ahead: float) -> np.ndarray:
    """The user term of every user table row, F.HISTORY_AHEAD = ahead."""
    def user_term(ids, empty):
      feats = self.transform(ids, empty, tf.zeros(tf.shape(ids), tf.int64))
      if self._has_history:
        feats[F.HISTORY_AHEAD] = tf.fill(tf.shape(ids), ahead)
      if not self.query_tower.built:  # A fresh model (catalog refresh).
        self.query_tower(feats)
      user_kernel, _, bias = self.query_tower.split_projection()
      return tf.matmul(self.query_tower.user_inputs(feats), user_kernel) + bias
    # "" is no user's id: the last, empty row and the out-of-vocabulary id.
    return self._in_chunks(list(self._table_user_ids) + [""], user_term)

  def _now(self, n: tf.Tensor) -> tf.Tensor:
    return tf.fill([n], tf.cast(tf.timestamp(), tf.int64))

  def _outputs(self, query, candidate, feats,
               kinds: Sequence[str] = ("regression", "binary", "multilabel")
               ) -> dict[str, tf.Tensor]:
    raw = model_lib.score(self.ranking_heads, self.query_heads, query,
                          candidate, feats)
    out = {output: self._serve[task](raw[task])
           for task, output, kind in self._tasks if kind in kinds}
    out["affinity"] = tf.reduce_sum(query * candidate, axis=-1)
    return out

  @tf.function(input_signature=[
      tf.TensorSpec([None], tf.string, name="user_id"),
      tf.TensorSpec([None], tf.string, name="item_id")])
  def serving_default(self, user_id, item_id):
    now = self._now(1)
    feats = self.transform(user_id, item_id,
                           tf.fill(tf.shape(user_id), now[0]),
                           user_side=False)
    query = self._query(user_id, now, feats[F.HOUR][:1],
                        feats[F.WEEKDAY][:1])
    return self._outputs(query, self.candidate_tower(feats), feats)

  def _query(self, user_id: tf.Tensor, timestamp: tf.Tensor,
             hour: tf.Tensor, weekday: tf.Tensor) -> tf.Tensor:
    """The query tower's output for known histories as of `timestamp`
    ([n], or [1] for the batch), at the hour and weekday given ([n] or [1]).

    In two terms (QueryTower.split_projection): the user's, precomputed per
    user table row, and the time's. No transform graph runs for the user,
    which was a large share of a `recommend` call
    (docs/design_measurements.md). The user's term is the "history runs
    past the request" one where the timestamp comes before the user's last
    history event, as `transform` sets F.HISTORY_AHEAD.
    """
    _, context_kernel, _ = self.query_tower.split_projection()
    rows = self.user_rows.lookup(user_id)
    terms = tf.gather(self.user_query_terms, rows)
    if self.history_modes:
      ahead = self._history_runs_past(rows, timestamp)
      terms = tf.where(ahead[:, None],
                       tf.gather(self.user_query_terms_ahead, rows), terms)
    return terms + tf.matmul(self.query_tower.context_inputs(hour, weekday),
                             context_kernel)

  def _because(self, user_id: tf.Tensor, top: tf.Tensor) -> tf.Tensor:
    """For each returned item, the closest item of the user's history."""
    n = tf.shape(user_id)[0]
    k = tf.shape(top)[1]
    history = self._histories(self.user_rows.lookup(user_id)).to_tensor("")
    history = tf.pad(history, [[0, 0], [0, 1]])  # never empty; "" is no item
    rows = self.item_rows.lookup(history)  # [n, h], -1 padding / unknown
    unit = self.unit_index
    similarity = tf.einsum("nkd,nhd->nkh", tf.gather(unit, top),
                           tf.gather(unit, tf.maximum(rows, 0)))
    top = tf.cast(top, tf.int64)
    usable = tf.logical_and(rows[:, None, :] >= 0,
                            rows[:, None, :] != top[..., None])
    similarity = tf.where(usable, similarity, -np.inf)
    best = tf.argmax(similarity, axis=-1, output_type=tf.int32)  # [n, k]
    because = tf.gather(history, best, batch_dims=1)
    found = tf.reduce_any(usable, axis=-1)
    return tf.reshape(tf.where(found, because, ""), [n, k])

  def set_fusion_weights(self, weights: Sequence[float],
                         search: Optional[Mapping[str, Any]] = None) -> None:
    """The weights `recommend` fuses with (what the fusion search chose)."""
    self.fusion_spec = self.fusion_spec.with_weights(weights, search)
    self.fusion_weights.assign(
        np.asarray(self.fusion_spec.weights, np.float32))

  def fused_stage(self, query: tf.Tensor, scores: tf.Tensor,
                  hour: tf.Tensor, weekday: tf.Tensor,
                  weights: tf.Tensor) -> dict[str, Any]:
    """The second stage: the best `candidates` by retrieval score, scored
    by every ranking head and fused (trainer/fusion.py).

    Args:
      query: [n, d] query embeddings.
      scores: [n, items] retrieval scores, -inf for excluded items.
      hour, weekday: [n] the time of each request row.
      weights: [T] or [n, T] fusion weights.

    Returns:
      rows [n, C] catalog rows in retrieval order, retrieval [n, C] their
      scores, raw {task: [n, C]} head outputs, values [n, C, T], fused
      [n, C] and contributions [n, C, T].
    """
    n = tf.shape(query)[0]
    c = self.candidates
    retrieval, rows = topk.blocked_top_k(scores, c)
    raw = {}
    if self.ranking_heads is not None:
      candidates = tf.reshape(tf.gather(self.index, rows), [n * c, -1])
      heads = model_lib.score(
          self.ranking_heads, None, tf.repeat(query, c, axis=0), candidates,
          {F.HOUR: tf.repeat(hour, c), F.WEEKDAY: tf.repeat(weekday, c)})
      raw = {t: tf.reshape(v, [n, c]) for t, v in heads.items()}
    values = fusion_lib.task_values(self.fusion_spec, retrieval, raw)
    fused, contributions = fusion_lib.fuse(values, weights, retrieval)
    return {"rows": rows, "retrieval": retrieval, "raw": raw,
            "values": values, "fused": fused,
            "contributions": contributions}

  def retrieval_scores(self, query: tf.Tensor,
                       user_id: Optional[tf.Tensor] = None,
                       exclude_item_ids: Optional[tf.Tensor] = None
                       ) -> tf.Tensor:
    """[n, items]: every catalog item's retrieval score for each query,
    -inf at the excluded items ([n, m] ids, see `exclude`), with the
    new-item policies' bonuses when they are configured (the matching one
    needs the queries' user_id)."""
    scores = tf.matmul(query, self.index_by_dim)
    if self.freshness and self.freshness["bonus"] > 0:
      scores += freshness_lib.bonus(self.item_added_at, self._now(1)[0],
                                    self.freshness)[None, :]
    available = (scores if exclude_item_ids is None
                 else self.exclude(scores, exclude_item_ids))
    if self.new_item_match and user_id is not None:
      table = tf.RaggedTensor.from_row_splits(
          self.match_values, self.match_splits, validate=False)
      available = new_item_match_lib.add_bonus(
          available, tf.gather(table, self.user_rows.lookup(user_id)),
          self.new_item_match["bonus"], new_item_match_lib.spread(scores),
          self.new_item_match.get("keep_top"))
    return available

  def serve_ranking(self, raw: Mapping[str, tf.Tensor]
                    ) -> dict[str, tf.Tensor]:
    """Raw ranking head outputs -> what a client receives, by output name."""
    return {output: self._serve[task](raw[task])
            for task, output, kind in self._tasks if kind in _RANKING_KINDS}

  def item_categories_ragged(self) -> tf.RaggedTensor:
    """[items, (categories)]: each catalog item's category indices."""
    return tf.RaggedTensor.from_row_splits(
        self.item_category_values, self.item_category_splits, validate=False)

  def exclude(self, scores: tf.Tensor, exclude_item_ids: tf.Tensor
              ) -> tf.Tensor:
    """scores [n, items] with -inf at each row's excluded items ([n, m]
    ids, "" padding; ids outside the catalog are ignored)."""
    rows = self.item_rows.lookup(exclude_item_ids)  # [n, m], -1 unknown
    known = tf.where(rows >= 0)  # (batch row, position) of known items
    return tf.tensor_scatter_nd_update(
        scores, tf.stack([known[:, 0], tf.gather_nd(rows, known)], axis=1),
        tf.fill([tf.shape(known)[0]], tf.constant(-np.inf, scores.dtype)))

  def _recommend(self, user_id, k, exclude_item_ids=None, weights=None,
                 timestamp=None):
    """timestamp: [n] Unix seconds the context features are read from
    (None: the request's time, one for the batch)."""
    n = tf.shape(user_id)[0]
    if timestamp is None:
      timestamp = self._now(1)
      hour, weekday = time_features.hour_and_weekday(timestamp)
      hours, weekdays = tf.fill([n], hour[0]), tf.fill([n], weekday[0])
    else:
      hour, weekday = time_features.hour_and_weekday(timestamp)
      hours, weekdays = hour, weekday
    query = self._query(user_id, timestamp, hour, weekday)
    scores = self.retrieval_scores(query, user_id, exclude_item_ids)
    stage = self.fused_stage(
        query, scores, hours, weekdays,
        self.fusion_weights if weights is None else weights)
    # top_k keeps the lower position first among ties: the retrieval order.
    top = tf.math.top_k(stage["fused"], k)
    top_rows = tf.gather(stage["rows"], top.indices, batch_dims=1)

    def pick(values):
      return tf.gather(values, top.indices, batch_dims=1)

    out = {output: pick(value)
           for output, value in self.serve_ranking(stage["raw"]).items()}
    for i, task in enumerate(self.fusion_spec.tasks):
      out[f"contribution_{task}"] = pick(stage["contributions"][..., i])
    out.update(
        item_ids=tf.gather(self.item_ids, top_rows),
        titles=tf.gather(self.item_titles, top_rows),
        scores=top.values,
        retrieval_scores=pick(stage["retrieval"]),
        because_item_ids=(self._because(user_id, top_rows)
                          if self._has_history else tf.fill([n, k], "")))
    return out

  @tf.function(input_signature=[
      tf.TensorSpec([None], tf.string, name="user_id")])
  def recommend(self, user_id):
    return self._recommend(user_id, self.top_k)

  @tf.function(input_signature=[
      tf.TensorSpec([None], tf.string, name="user_id"),
      tf.TensorSpec([None, None], tf.string, name="exclude_item_ids"),
      tf.TensorSpec([], tf.int32, name="k")])
  def recommend_excluding(self, user_id, exclude_item_ids, k):
    k = tf.clip_by_value(k, 1, self.max_k)
    return self._recommend(user_id, k, exclude_item_ids)

  @tf.function(input_signature=[
      tf.TensorSpec([None], tf.string, name="user_id"),
      tf.TensorSpec([None, None], tf.string, name="exclude_item_ids"),
      tf.TensorSpec([], tf.int32, name="k"),
      tf.TensorSpec([None, None], tf.float32, name="fusion_weights")])
  def recommend_weighted(self, user_id, exclude_item_ids, k, fusion_weights):
    k = tf.clip_by_value(k, 1, self.max_k)
    weights = fusion_lib.check_weights(fusion_weights, tf.shape(user_id)[0],
                                       self.fusion_spec)
    return self._recommend(user_id, k, exclude_item_ids, weights)

  @tf.function(input_signature=[
      tf.TensorSpec([None], tf.string, name="user_id"),
      tf.TensorSpec([None, None], tf.string, name="exclude_item_ids"),
      tf.TensorSpec([], tf.int32, name="k"),
      tf.TensorSpec([None, None], tf.float32, name="fusion_weights"),
      tf.TensorSpec([None], tf.int64, name="timestamp")])
  def recommend_at(self, user_id, exclude_item_ids, k, fusion_weights,
                   timestamp):
    k = tf.clip_by_value(k, 1, self.max_k)
    weights = fusion_lib.check_weights(fusion_weights, tf.shape(user_id)[0],
                                       self.fusion_spec)
    return self._recommend(user_id, k, exclude_item_ids, weights, timestamp)

  @tf.function(input_signature=[
      tf.TensorSpec([None], tf.string, name="user_id"),
      tf.TensorSpec([None], tf.string, name="item_id")])
  def explain(self, user_id, item_id):
    return explain_lib.explain(self, user_id, item_id)

  @tf.function(input_signature=[
      tf.TensorSpec([None], tf.string, name="user_id")])
  def fusion(self, user_id):
    """The fused tasks, in `fusion_weights` order, and the model's weights:
    what a client needs to call recommend_weighted. One row per user_id
    (the ids only size the batch, as TF Serving's batching wants)."""
    n = tf.shape(user_id)[0]
    tasks = tf.constant(self.fusion_spec.tasks)
    return {"tasks": tf.tile(tasks[None], [n, 1]),
            "weights": tf.tile(self.fusion_weights[None], [n, 1])}

  @tf.function(input_signature=[
      tf.TensorSpec([None], tf.string, name="user_id")])
  def embed_user(self, user_id):
    return self._embed_user(user_id, self._now(tf.shape(user_id)[0]))

  @tf.function(input_signature=[
      tf.TensorSpec([None], tf.string, name="user_id"),
      tf.TensorSpec([None], tf.int64, name="timestamp")])
  def embed_user_at(self, user_id, timestamp):
    """embed_user as of each row's timestamp: the query's context (hour,
    weekday) read from it instead of the request's clock, as recommend_at
    does, so what is computed from it does not depend on the hour it runs."""
    return self._embed_user(user_id, timestamp)

  def _embed_user(self, user_id, timestamp):
    n = tf.shape(user_id)[0]
    feats = self.transform(user_id, tf.fill([n], ""), timestamp)
    return {"embedding": self.query_tower(feats)}

  @tf.function(input_signature=[
      tf.TensorSpec([None], tf.string, name="item_id")])
  def embed_item(self, item_id):
    n = tf.shape(item_id)[0]
    feats = self.transform(tf.fill([n], ""), item_id, self._now(n))
    return {"embedding": self.candidate_tower(feats)}

  @tf.function(input_signature=[
      tf.TensorSpec([None], tf.string, name="examples")])
  def predict_examples(self, examples):
    """Scores serialized tf.Examples (TFMA, batch scoring).

    Item and user features come from the catalog held in the model, as for
    every other signature, so an example needs nothing more than the two ids.
    """
    parsed = tf.io.parse_example(examples, {
        r.USER_ID: tf.io.FixedLenFeature([], tf.string),
        r.ITEM_ID: tf.io.FixedLenFeature([], tf.string),
        r.TIMESTAMP: tf.io.FixedLenFeature([], tf.int64, default_value=-1),
        schema.HISTORY: tf.io.VarLenFeature(tf.string),
    })
    ts = parsed[r.TIMESTAMP]
    feats = self.transform(
        parsed[r.USER_ID], parsed[r.ITEM_ID],
        tf.where(ts >= 0, ts, self._now(tf.shape(ts)[0])),
        history=tf.RaggedTensor.from_sparse(parsed[schema.HISTORY]))
    return self._outputs(self.query_tower(feats), self.candidate_tower(feats),
                         feats)


def align_item_text(item_ids: Sequence[str],
                    item_text: Optional[Mapping[str, Any]]
                    ) -> tuple[np.ndarray, np.ndarray]:
  """LM vectors and has-text flags in catalog order; zeros where missing."""
  if not item_text or not len(item_text["item_ids"]):
    raise ValueError("the model reads item text but the export got none")
  row = {i: n for n, i in enumerate(item_text["item_ids"])}
  dim = np.asarray(item_text["vectors"]).shape[1]
  vectors = np.zeros((len(item_ids), dim), np.float32)
  has_text = np.zeros(len(item_ids), np.int64)
  for n, item in enumerate(item_ids):
    if item in row:
      vectors[n] = item_text["vectors"][row[item]]
      has_text[n] = item_text["has_text"][row[item]]
  return vectors, has_text


SIGNATURES = ("serving_default", "recommend", "recommend_excluding",
              "recommend_weighted", "recommend_at", "fusion", "explain",
              "predict_examples",
              "embed_user", "embed_user_at", "embed_item")


def model_card(module: ServingModule) -> dict[str, Any]:
  """What the model is, for readers without TensorFlow (model_layout)."""
  return {"tasks": json.loads(module._card_tasks),  # pylint: disable=protected-access
          "ranking": module.fusion_spec.card(),
          "signatures": list(SIGNATURES)}


def save(module: ServingModule, export_dir: str) -> None:
  """The SavedModel with every signature, and its model card."""
  signatures = {name: getattr(module, name) for name in SIGNATURES}
  tf.saved_model.save(module, export_dir, signatures=signatures)
  path = model_layout.model_card_path(export_dir)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    json.dump(model_card(module), f, indent=1)


def write_warmup_requests(export_dir: str, model_name: str,
                          user_ids: Sequence[str],
                          item_ids: Sequence[str]) -> int:
  """Writes TF Serving warmup records: real requests for the main signatures."""
  from serving import apis  # pylint: disable=g-import-not-at-top
  path = model_layout.warmup_path(export_dir)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  requests = []
  for signature, inputs in (
      ("recommend", {"user_id": list(user_ids)}),
      ("serving_default", {"user_id": list(user_ids),
                           "item_id": list(item_ids)}),
  ):
    req = apis.PredictRequest()
    req.model_spec.name = model_name
    req.model_spec.signature_name = signature
    for key, values in inputs.items():
      req.inputs[key].CopyFrom(tf.make_tensor_proto(values, dtype=tf.string))
    requests.append(req)
  with tf.io.TFRecordWriter(path) as writer:
    for req in requests:
      log = apis.PredictionLog(predict_log=apis.PredictLog(request=req))
      writer.write(log.SerializeToString())
  return len(requests)
