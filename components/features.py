"""Names of the transformed features: the contract between Transform and Trainer.

Raw field names live in components.records; these are the outputs of the
preprocessing_fn, i.e. what the model reads. Both sides import them from here.
"""

USER_ID = "user_id_index"
ITEM_ID = "item_id_index"
CATEGORIES = "categories_index"  # sparse: multi-valued
TITLE_TOKENS = "title_token_index"  # sparse: multi-valued
YEAR_Z = "year_z"  # z-scored release year, 0 when unknown
YEAR_KNOWN = "year_known"
HOUR = "hour_of_day"
WEEKDAY = "day_of_week"


def user_attribute(name: str) -> str:
  return f"user_{name}_index"


# Labels and per-task sample weights (a weight of 0 masks a missing label).
RATING = "rating_label"
RATING_WEIGHT = "rating_weight"
LIKE = "like_label"
LIKE_WEIGHT = "like_weight"
RETRIEVAL_WEIGHT = "retrieval_weight"  # 1 for consumed items (positives)

# Vocabulary file names (tft_output.vocabulary_size_by_name).
USER_ID_VOCAB = "user_id"
ITEM_ID_VOCAB = "item_id"
CATEGORIES_VOCAB = "categories"
TITLE_TOKENS_VOCAB = "title_tokens"


def user_attribute_vocab(name: str) -> str:
  return f"user_{name}"


HOURS_PER_DAY = 24
DAYS_PER_WEEK = 7
