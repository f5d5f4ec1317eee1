"""Names of the transformed features: the contract between Transform and Trainer.

Raw field names live in contracts.records; these are the outputs of the
preprocessing_fn, i.e. what the model reads. Both sides import them from here,
and so does the config, which names task labels by the keys of the label
tables at the end of this module.
"""

USER_ID = "user_id_index"
ITEM_ID = "item_id_index"
CATEGORIES = "categories_index"  # sparse: multi-valued
TITLE_TOKENS = "title_token_index"  # sparse: multi-valued
TAGS = "tags_index"  # sparse: multi-valued
YEAR_Z = "year_z"  # z-scored release year, 0 when unknown
YEAR_KNOWN = "year_known"
# The release year clipped to the train split's range, 0 when unknown; not a
# model input: its schema domain records that range (components.transform).
YEAR_CLIPPED = "year_clipped"
HOUR = "hour_of_day"
WEEKDAY = "day_of_week"
# Sparse: item vocabulary indices of the items consumed before the event,
# oldest first (the item vocabulary's OOV index for items it does not know).
HISTORY = "history_item_index"
# ExampleGen keeps at most this many; the trainer reads the last
# `trainer.history_length` of them.
MAX_HISTORY_LENGTH = 50

# A transformed float vector feature whose name starts with this prefix (e.g.
# the language-model embedding of an item's text) is an item feature: the
# candidate tower takes it as a dense input, whatever its width.
ITEM_DENSE_PREFIX = "item_dense_"


# The frozen language-model embedding of an item's text (TextEmbedder) and
# whether the item had any text. Not made by the transform: the trainer looks
# them up per item (by vocabulary index in training, by catalog row when
# serving), so the TFT graph stays free of 384-wide constants and an item
# added by `mtrec catalog refresh` needs no new transform.
ITEM_TEXT_EMBEDDING = "item_text_embedding"
ITEM_HAS_TEXT = "item_has_text"

# 1.0 where a row's history runs past the row's own time: a training row
# given its user's served history (trainer/served_history.py), or a request
# the export answers from a served history whose last event comes after the
# request's timestamp; 0 (or absent) where the history is what came before.
# Not made by the transform: the trainer and the export set it.
HISTORY_AHEAD = "history_ahead"


def user_attribute(name: str) -> str:
  return f"user_{name}_index"


# Labels and per-task sample weights (a weight of 0 masks a missing label).
RATING = "rating_label"
RATING_WEIGHT = "rating_weight"
LIKE = "like_label"
LIKE_WEIGHT = "like_weight"
WATCH_FRACTION = "watch_fraction_label"
WATCH_FRACTION_WEIGHT = "watch_fraction_weight"
RETRIEVAL_WEIGHT = "retrieval_weight"  # 1 for consumed items (positives)

# Vocabulary file names (tft_output.vocabulary_size_by_name).
USER_ID_VOCAB = "user_id"
ITEM_ID_VOCAB = "item_id"  # also indexes HISTORY
CATEGORIES_VOCAB = "categories"
TITLE_TOKENS_VOCAB = "title_tokens"
TAGS_VOCAB = "tags"


def user_attribute_vocab(name: str) -> str:
  return f"user_{name}"


HOURS_PER_DAY = 24
DAYS_PER_WEEK = 7

# Labels a task in the config may name. Scalar labels: name -> (label
# feature, weight feature or None for "every row counts").
REGRESSION_LABELS = {
    "rating": (RATING, RATING_WEIGHT),
    "watch_fraction": (WATCH_FRACTION, WATCH_FRACTION_WEIGHT),
}
BINARY_LABELS = {
    "like": (LIKE, LIKE_WEIGHT),
    "click": (RETRIEVAL_WEIGHT, None),  # consumed or only shown
}
# Multi-label labels: name -> (sparse feature of the event's item, its
# vocabulary). Predicted from the query side only (the user's interest in
# what they consume next), so the item's own features cannot leak in.
MULTILABEL_LABELS = {
    "categories": (CATEGORIES, CATEGORIES_VOCAB),
    "tags": (TAGS, TAGS_VOCAB),
}
