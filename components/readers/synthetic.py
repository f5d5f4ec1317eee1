"""Synthetic impressions with known structure: the demo's data and fast tests'.

A recommender demo needs data that runs anywhere without a download, at any
size, and that a model can measurably learn from. This reader generates it
from a small generative model whose structure every part of the pipeline can
exploit, so a broken feature path shows up as a metric drop:

* World (depends only on seed and the catalog sizes). K=12 latent topics.
  Each item has a main and a secondary topic, 1-3 categories derived from
  them, a title made of topic words (so text carries the topic), tags naming
  its topics, a year, a latent quality, and a Zipf popularity (weight
  1/rank^0.9 over a random ranking). About 10% of items are cold-start: they
  are released at a random time in the last 20% of the range and are never
  shown before it. Each user has age_bucket, country and device; their topic
  preferences are drawn from a Dirichlet whose concentration is raised on
  topics tied to those attributes, so attributes predict taste. Every user
  has two such preference vectors, an early and a late one, and the taste at
  time t interpolates between them (drift). User activity is log-normal.
* Impressions (depend on seed and shard index only). A timestamp uniform over
  the range; a user by activity; an item by a mix of popularity (40%) and the
  user's current taste (60%: a topic from the preferences, then an item of
  that topic by popularity), redrawn while it is not yet released. The click
  probability rises with affinity (the user's current weight on the item's
  topics), popularity and quality. Clicked rows get like, rating (1..5) and
  watch_fraction, all driven by affinity and quality; unclicked rows have
  them as None.

Shards are generated independently with vectorized numpy, so 10M rows
parallelize across workers and the same arguments give the same rows.
"""

from __future__ import annotations

import datetime
import math
import re
from typing import Iterator, Optional, Union

import numpy as np

from contracts import records
from contracts.records import RawRow
from components.readers.base import Reader

TOPICS = ("space", "cooking", "jazz", "football", "history", "gardening",
          "travel", "fashion", "gaming", "finance", "wildlife", "comedy")

# Per topic: its main category first, then related ones.
_TOPIC_CATEGORIES = {
    "space": ("science", "technology", "education"),
    "cooking": ("food", "lifestyle", "entertainment"),
    "jazz": ("music", "entertainment", "history & culture"),
    "football": ("sports", "entertainment"),
    "history": ("history & culture", "education", "science"),
    "gardening": ("nature", "lifestyle", "food"),
    "travel": ("lifestyle", "nature", "history & culture"),
    "fashion": ("lifestyle", "business", "entertainment"),
    "gaming": ("technology", "entertainment", "sports"),
    "finance": ("business", "education", "technology"),
    "wildlife": ("nature", "science", "education"),
    "comedy": ("entertainment", "music", "lifestyle"),
}

_TOPIC_WORDS = {
    "space": ("Orbit", "Nebula", "Rocket", "Galaxy", "Astronaut", "Comet",
              "Mars", "Cosmos", "Lunar", "Starship"),
    "cooking": ("Kitchen", "Recipe", "Baking", "Spice", "Pasta", "Chef",
                "Bread", "Flavor", "Grill", "Dumpling"),
    "jazz": ("Saxophone", "Swing", "Bebop", "Blues", "Trumpet", "Groove",
             "Improv", "Ballad", "Quartet", "Rhythm"),
    "football": ("Goal", "Striker", "Derby", "Stadium", "Penalty", "Midfield",
                 "Kickoff", "League", "Keeper", "Tactics"),
    "history": ("Empire", "Dynasty", "Ancient", "Revolution", "Medieval",
                "Archive", "Pharaoh", "Castle", "Chronicle", "Legacy"),
    "gardening": ("Garden", "Seedling", "Compost", "Orchard", "Bloom",
                  "Greenhouse", "Pruning", "Harvest", "Soil", "Roses"),
    "travel": ("Journey", "Passport", "Island", "Backpacking", "Voyage",
               "Coastline", "Roadtrip", "Harbor", "Summit", "Wanderlust"),
    "fashion": ("Runway", "Couture", "Denim", "Silk", "Tailor", "Vintage",
                "Sneaker", "Wardrobe", "Trend", "Boutique"),
    "gaming": ("Pixel", "Quest", "Arcade", "Console", "Speedrun", "Boss",
               "Respawn", "Dungeon", "Esports", "Joystick"),
    "finance": ("Market", "Dividend", "Portfolio", "Budget", "Stock",
                "Crypto", "Savings", "Interest", "Bond", "Startup"),
    "wildlife": ("Safari", "Wolf", "Rainforest", "Eagle", "Coral", "Elephant",
                 "Migration", "Predator", "Tiger", "Owl"),
    "comedy": ("Laugh", "Prank", "Sitcom", "Standup", "Parody", "Joke",
               "Blooper", "Satire", "Sketch", "Giggle"),
}

_TITLE_PATTERNS = (
    "The {a} {b}", "{a} and {b}", "{a} {b} Diaries", "Secrets of the {a}",
    "{a}: {b} Stories", "Inside the {a} {b}", "{a} {b} Live",
    "A Guide to {a} and {b}", "{a} {b} Weekly", "Beyond the {a}",
)

# Attribute value -> (probability, topics it makes more likely).
_AGE_BUCKETS = {
    "18-24": (0.20, ("gaming", "comedy", "fashion")),
    "25-34": (0.30, ("travel", "fashion", "football")),
    "35-44": (0.22, ("cooking", "finance", "football")),
    "45-54": (0.15, ("finance", "history", "gardening")),
    "55+": (0.13, ("history", "gardening", "jazz")),
}
_COUNTRIES = {
    "US": (0.30, ("finance", "comedy")),
    "GB": (0.12, ("football", "history")),
    "DE": (0.10, ("football", "space")),
    "FR": (0.09, ("cooking", "fashion")),
    "IN": (0.15, ("cooking", "space")),
    "BR": (0.10, ("football", "jazz")),
    "JP": (0.08, ("gaming", "wildlife")),
    "KE": (0.06, ("wildlife", "travel")),
}
_DEVICES = {
    "mobile": (0.50, ("comedy", "gaming")),
    "desktop": (0.25, ("finance", "history")),
    "tv": (0.15, ("football", "wildlife")),
    "tablet": (0.10, ("cooking", "gardening")),
}
_ATTRIBUTES = (("age_bucket", _AGE_BUCKETS, 1.2), ("country", _COUNTRIES, 0.8),
               ("device", _DEVICES, 0.6))

_ZIPF_EXPONENT = 0.9
_COLD_FRACTION = 0.1
_COLD_START = 0.8  # Cold items are released in [0.8, 0.95) of the range.
_COLD_END = 0.95
_TARGETED_SHARE = 0.6
_MAX_REDRAWS = 50
_SHARD_UNIT = re.compile(r"synthetic:shard-(\d+)$")
_ITEMS_UNIT = "synthetic:items"
_USERS_UNIT = "synthetic:users"


def _epoch_seconds(start: Union[str, int, float, datetime.date]) -> int:
  if isinstance(start, (int, float)):
    return int(start)
  if isinstance(start, str):
    start = datetime.datetime.fromisoformat(start)
  if not isinstance(start, datetime.datetime):
    start = datetime.datetime(start.year, start.month, start.day)
  if start.tzinfo is None:
    start = start.replace(tzinfo=datetime.timezone.utc)
  return int(start.timestamp())


def _sigmoid(x: np.ndarray) -> np.ndarray:
  return 1.0 / (1.0 + np.exp(-x))


def _draw(cumulative: np.ndarray, lo: np.ndarray, hi: np.ndarray,
          uniform: np.ndarray) -> np.ndarray:
  """Index i with cumulative[i-1] <= v < cumulative[i], v uniform in [lo, hi)."""
  idx = np.searchsorted(cumulative, lo + uniform * (hi - lo), side="right")
  return np.minimum(idx, len(cumulative) - 1)


class _World:
  """Users and items: everything that does not depend on the shard."""

  def __init__(self, seed: int, num_users: int, num_items: int, start: int,
               span: int):
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    k = len(TOPICS)

    # Items.
    self.item_topic = rng.integers(k, size=num_items)
    self.item_second = rng.integers(k, size=num_items)
    rank = rng.permutation(num_items)
    self.popularity = 1.0 / (rank + 1.0) ** _ZIPF_EXPONENT
    # Popularity's effect on clicks uses the rank percentile (1 = most
    # popular), which stays in [0, 1] whatever the catalog size.
    self.pop_pct = 1.0 - rank / max(num_items - 1, 1)
    self.quality = rng.normal(0.0, 1.0, size=num_items)
    self.release = np.full(num_items, np.iinfo(np.int64).min, dtype=np.int64)
    cold = rng.choice(num_items, size=int(round(_COLD_FRACTION * num_items)),
                      replace=False)
    self.release[cold] = start + np.floor(
        span * rng.uniform(_COLD_START, _COLD_END, size=len(cold))
    ).astype(np.int64)
    self.cold = np.sort(cold)
    start_year = datetime.datetime.fromtimestamp(
        start, datetime.timezone.utc).year
    years = start_year - np.minimum(rng.exponential(8.0, size=num_items), 60)
    self.year = years.astype(np.int64)
    for i in self.cold:
      self.year[i] = datetime.datetime.fromtimestamp(
          int(self.release[i]), datetime.timezone.utc).year
    extra_related = rng.random(num_items) < 0.6
    extra_second = rng.random(num_items) < 0.3
    related_pick = rng.integers(1, 1000, size=num_items)
    word_a = rng.integers(10, size=num_items)
    # Offset 1..9 so that two words of the same topic never repeat.
    word_b = (word_a + rng.integers(1, 10, size=num_items)) % 10
    pattern = rng.integers(len(_TITLE_PATTERNS), size=num_items)
    b_from_second = rng.random(num_items) < 0.3

    self.item_ids = [f"i{i}" for i in range(num_items)]
    self.titles = []
    self.categories = []
    self.tags = []
    for i in range(num_items):
      main, second = TOPICS[self.item_topic[i]], TOPICS[self.item_second[i]]
      b_topic = second if b_from_second[i] else main
      self.titles.append(_TITLE_PATTERNS[pattern[i]].format(
          a=_TOPIC_WORDS[main][word_a[i]], b=_TOPIC_WORDS[b_topic][word_b[i]]))
      related = _TOPIC_CATEGORIES[main]
      categories = [related[0]]
      if extra_related[i]:
        categories.append(related[1 + related_pick[i] % (len(related) - 1)])
      if extra_second[i]:
        categories.append(_TOPIC_CATEGORIES[second][0])
      self.categories.append(list(dict.fromkeys(categories)))
      self.tags.append(list(dict.fromkeys([main, second])))

    # Popularity draws: one cumulative array over items sorted by topic serves
    # both the global draw and the per-topic draws (a slice of it).
    self.by_topic = np.argsort(self.item_topic, kind="stable")
    cumulative = np.cumsum(self.popularity[self.by_topic])
    self.cumulative = cumulative
    bounds = np.searchsorted(self.item_topic[self.by_topic], np.arange(k + 1))
    starts = np.concatenate([[0.0], cumulative])
    self.topic_lo = starts[bounds[:-1]]
    self.topic_hi = starts[bounds[1:]]
    warm = np.flatnonzero(self.release == np.iinfo(np.int64).min)
    self.warm = warm
    self.warm_cumulative = np.cumsum(self.popularity[warm])

    # Users.
    topic_index = {t: i for i, t in enumerate(TOPICS)}
    concentration = np.full((num_users, k), 0.15)
    self.user_attributes = {}
    for name, values, boost in _ATTRIBUTES:
      keys = list(values)
      probs = np.array([values[v][0] for v in keys])
      chosen = rng.choice(len(keys), size=num_users, p=probs / probs.sum())
      self.user_attributes[name] = [keys[c] for c in chosen]
      boosts = np.zeros((len(keys), k))
      for j, v in enumerate(keys):
        boosts[j, [topic_index[t] for t in values[v][1]]] = boost
      concentration += boosts[chosen]
    self.pref_early = self._dirichlet(rng, concentration)
    self.pref_late = self._dirichlet(rng, concentration)
    self.user_bias = rng.normal(0.0, 0.5, size=num_users)
    self.activity_cumulative = np.cumsum(
        rng.lognormal(0.0, 1.0, size=num_users))
    self.user_ids = [f"u{u}" for u in range(num_users)]

  @staticmethod
  def _dirichlet(rng: np.random.Generator, alpha: np.ndarray) -> np.ndarray:
    g = rng.gamma(alpha)
    g += 1e-12
    return g / g.sum(axis=1, keepdims=True)


class SyntheticReader(Reader):
  """Generated impressions, items and users; see the module docstring.

  Args:
    num_interactions: total number of impression rows.
    seed: everything generated is a function of the arguments alone.
    num_users: default max(200, num_interactions // 40).
    num_items: default max(300, num_interactions // 60).
    rows_per_shard: impressions per unit; the last shard takes the remainder.
    start: first day of the time range (ISO date/time, UTC if naive; or epoch
      seconds).
    days: length of the time range.
  """

  user_feature_names = ("age_bucket", "country", "device")

  def __init__(self, num_interactions: int, seed: int = 0,
               num_users: Optional[int] = None,
               num_items: Optional[int] = None,
               rows_per_shard: int = 100_000,
               start: Union[str, int] = "2024-01-01", days: int = 365):
    if num_interactions < 0:
      raise ValueError(f"num_interactions must be >= 0, got {num_interactions}")
    if seed < 0:
      raise ValueError(f"seed must be >= 0, got {seed}")
    if rows_per_shard < 1:
      raise ValueError(f"rows_per_shard must be >= 1, got {rows_per_shard}")
    if days <= 0:
      raise ValueError(f"days must be > 0, got {days}")
    self.num_interactions = int(num_interactions)
    self.seed = int(seed)
    self.num_users = int(num_users if num_users is not None
                         else max(200, self.num_interactions // 40))
    self.num_items = int(num_items if num_items is not None
                         else max(300, self.num_interactions // 60))
    if self.num_users < 1 or self.num_items < 1:
      raise ValueError("num_users and num_items must be >= 1")
    self.rows_per_shard = int(rows_per_shard)
    self.start = _epoch_seconds(start)
    self.days = days
    self._span = int(round(days * 86400))
    self._world_cache = None

  def __getstate__(self):
    # The world is rebuilt on each worker rather than shipped with the reader.
    state = dict(self.__dict__)
    state["_world_cache"] = None
    return state

  @property
  def _world(self) -> _World:
    if self._world_cache is None:
      self._world_cache = _World(self.seed, self.num_users, self.num_items,
                                 self.start, self._span)
    return self._world_cache

  @property
  def num_shards(self) -> int:
    return math.ceil(self.num_interactions / self.rows_per_shard)

  def interaction_units(self) -> list[str]:
    return [f"synthetic:shard-{i:05d}" for i in range(self.num_shards)]

  def item_units(self) -> list[str]:
    return [_ITEMS_UNIT]

  def user_units(self) -> list[str]:
    return [_USERS_UNIT]

  def cold_start_items(self) -> dict[str, int]:
    """Cold-start item id -> its release time (epoch seconds)."""
    world = self._world
    return {world.item_ids[i]: int(world.release[i]) for i in world.cold}

  def _shard_rows(self, shard: int) -> int:
    return min(self.rows_per_shard,
               self.num_interactions - shard * self.rows_per_shard)

  def read_interactions(self, unit: str) -> Iterator[RawRow]:
    match = _SHARD_UNIT.match(unit)
    if not match or int(match.group(1)) >= self.num_shards:
      raise ValueError(f"unknown unit {unit!r} for {self.num_shards} shards")
    shard = int(match.group(1))
    w = self._world
    n = self._shard_rows(shard)
    rng = np.random.default_rng(np.random.SeedSequence([self.seed, 1, shard]))

    frac = rng.random(n)
    ts = self.start + np.floor(frac * self._span).astype(np.int64)
    user = _draw(w.activity_cumulative, 0.0, w.activity_cumulative[-1],
                 rng.random(n))
    pref = ((1.0 - frac)[:, None] * w.pref_early[user]
            + frac[:, None] * w.pref_late[user])

    item = np.empty(n, dtype=np.int64)
    todo = np.arange(n)
    for _ in range(_MAX_REDRAWS):
      m = len(todo)
      targeted = rng.random(m) < _TARGETED_SHARE
      topic = (pref[todo].cumsum(axis=1) < rng.random(m)[:, None]).sum(axis=1)
      topic = np.minimum(topic, len(TOPICS) - 1)
      lo = np.where(targeted, w.topic_lo[topic], 0.0)
      hi = np.where(targeted, w.topic_hi[topic], w.cumulative[-1])
      item[todo] = w.by_topic[_draw(w.cumulative, lo, hi, rng.random(m))]
      todo = todo[w.release[item[todo]] > ts[todo]]
      if not len(todo):
        break
    else:
      item[todo] = w.warm[_draw(w.warm_cumulative, 0.0,
                                w.warm_cumulative[-1], rng.random(len(todo)))]

    rows = np.arange(n)
    affinity = (0.75 * pref[rows, w.item_topic[item]]
                + 0.25 * pref[rows, w.item_second[item]])
    quality = w.quality[item]
    click_logit = (-3.2 + 7.0 * affinity + 1.2 * w.pop_pct[item]
                   + 0.3 * quality + w.user_bias[user])
    click = rng.random(n) < _sigmoid(click_logit)
    like = rng.random(n) < _sigmoid(-2.0 + 8.0 * affinity + 0.6 * quality)
    rating = np.clip(np.rint(1.9 + 6.0 * affinity + 0.5 * quality
                             + rng.normal(0.0, 0.8, size=n)), 1, 5)
    watch = np.round(_sigmoid(-1.0 + 7.0 * affinity + 0.4 * quality
                              + rng.normal(0.0, 0.7, size=n)), 4)

    def labels(values: np.ndarray) -> list:
      out = values.astype(object)
      out[~click] = None
      return out.tolist()

    user_ids, item_ids = w.user_ids, w.item_ids
    columns = zip(user.tolist(), item.tolist(), ts.tolist(),
                  click.astype(np.int64).tolist(),
                  labels(like.astype(np.int64)), labels(rating), labels(watch))
    for r, (u, i, t, c, lk, rt, wf) in enumerate(columns, start=1):
      yield RawRow(source=unit, row=r, fields={
          records.USER_ID: user_ids[u],
          records.ITEM_ID: item_ids[i],
          records.TIMESTAMP: t,
          records.CLICK: c,
          records.LIKE: lk,
          records.RATING: rt,
          records.WATCH_FRACTION: wf,
      })

  def read_items(self, unit: str) -> Iterator[RawRow]:
    if unit != _ITEMS_UNIT:
      raise ValueError(f"unknown unit {unit!r}; expected {_ITEMS_UNIT!r}")
    w = self._world
    for i in range(self.num_items):
      yield RawRow(source=unit, row=i + 1, fields={
          records.ITEM_ID: w.item_ids[i],
          records.TITLE: w.titles[i],
          records.CATEGORIES: list(w.categories[i]),
          records.YEAR: int(w.year[i]),
          records.TAGS: list(w.tags[i]),
      })

  def read_users(self, unit: str) -> Iterator[RawRow]:
    if unit != _USERS_UNIT:
      raise ValueError(f"unknown unit {unit!r}; expected {_USERS_UNIT!r}")
    w = self._world
    for u in range(self.num_users):
      fields = {records.USER_ID: w.user_ids[u]}
      for name, _, _ in _ATTRIBUTES:
        fields[name] = w.user_attributes[name][u]
      yield RawRow(source=unit, row=u + 1, fields=fields)
