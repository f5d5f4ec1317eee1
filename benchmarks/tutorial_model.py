"""The TFRS multitask tutorial's joint model, as the tutorial writes it.

https://www.tensorflow.org/recommenders/examples/multitask: a user tower and
a movie tower (StringLookup + a 32-d Embedding each), a rating head
(256-128-1 MLP over the concatenated embeddings, MSE), an in-batch softmax
retrieval task, loss = rating_weight × rating loss + retrieval_weight ×
retrieval loss, Adagrad(0.1), batches of 8192 shuffled once and cached,
3 epochs. The "joint model" is rating_weight = retrieval_weight = 1.

It lives here, apart from the project's trainer, because it is the reference
the project is measured against: it must stay the tutorial's model, not drift
with mtrec's. The only departures are plumbing: ids come as strings from the
benchmark's split (not tfds), the vocabularies are the tutorial's (every user
of the dataset, every movie of the catalog) given by the caller, and the
metrics are computed by the benchmark from the towers' embeddings with one
definition for every model (benchmarks.baselines), which equals the
tutorial's FactorizedTopK over all movies.
"""

from __future__ import annotations

import os
from typing import Sequence

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # TFRS needs Keras 2.

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_recommenders as tfrs  # noqa: E402

EMBEDDING_DIM = 32
RATING_UNITS = (256, 128)
LEARNING_RATE = 0.1
BATCH_SIZE = 8192
EPOCHS = 3
SHUFFLE_BUFFER = 100_000


class MovielensModel(tfrs.models.Model):
  """The tutorial's `MovielensModel(rating_weight, retrieval_weight)`."""

  def __init__(self, user_ids: Sequence[str], movie_ids: Sequence[str],
               rating_weight: float = 1.0, retrieval_weight: float = 1.0):
    super().__init__()
    self.movie_model = tf.keras.Sequential([
        tf.keras.layers.StringLookup(vocabulary=list(movie_ids),
                                     mask_token=None),
        tf.keras.layers.Embedding(len(movie_ids) + 1, EMBEDDING_DIM),
    ])
    self.user_model = tf.keras.Sequential([
        tf.keras.layers.StringLookup(vocabulary=list(user_ids),
                                     mask_token=None),
        tf.keras.layers.Embedding(len(user_ids) + 1, EMBEDDING_DIM),
    ])
    self.rating_model = tf.keras.Sequential(
        [tf.keras.layers.Dense(u, activation="relu") for u in RATING_UNITS] +
        [tf.keras.layers.Dense(1)])
    self.rating_task = tfrs.tasks.Ranking(
        loss=tf.keras.losses.MeanSquaredError(),
        metrics=[tf.keras.metrics.RootMeanSquaredError()])
    # The tutorial attaches FactorizedTopK here; it only runs in evaluate(),
    # which the benchmark replaces by its own exact computation.
    self.retrieval_task = tfrs.tasks.Retrieval()
    self.rating_weight = rating_weight
    self.retrieval_weight = retrieval_weight

  def call(self, features):
    user_embeddings = self.user_model(features["user_id"])
    movie_embeddings = self.movie_model(features["movie_id"])
    return (user_embeddings, movie_embeddings,
            self.rating_model(
                tf.concat([user_embeddings, movie_embeddings], axis=1)))

  def compute_loss(self, features, training=False):
    ratings = features.pop("user_rating")
    user_embeddings, movie_embeddings, rating_predictions = self(features)
    rating_loss = self.rating_task(labels=ratings,
                                   predictions=rating_predictions)
    retrieval_loss = self.retrieval_task(user_embeddings, movie_embeddings)
    return (self.rating_weight * rating_loss +
            self.retrieval_weight * retrieval_loss)


def train(users: Sequence[str], movies: Sequence[str], ratings: np.ndarray,
          user_vocab: Sequence[str], movie_vocab: Sequence[str],
          epochs: int = EPOCHS, seed: int = 42,
          rating_weight: float = 1.0, retrieval_weight: float = 1.0
          ) -> MovielensModel:
  """Fits the joint model on training triples exactly as the tutorial does."""
  tf.keras.utils.set_random_seed(seed)
  data = tf.data.Dataset.from_tensor_slices({
      "user_id": np.asarray(users, dtype=object).astype(str),
      "movie_id": np.asarray(movies, dtype=object).astype(str),
      "user_rating": np.asarray(ratings, np.float32)})
  # The tutorial: train.shuffle(100_000).batch(8192).cache(), so the order
  # is drawn once and every epoch replays it.
  cached = data.shuffle(SHUFFLE_BUFFER, seed=seed).batch(BATCH_SIZE).cache()
  model = MovielensModel(user_vocab, movie_vocab, rating_weight,
                         retrieval_weight)
  model.compile(optimizer=tf.keras.optimizers.Adagrad(LEARNING_RATE))
  model.fit(cached, epochs=epochs, verbose=0)
  return model


def _batched(fn, values: Sequence[str], batch: int = 8192) -> np.ndarray:
  values = np.asarray(values, dtype=object).astype(str)
  return np.concatenate([fn(tf.constant(values[i:i + batch])).numpy()
                         for i in range(0, len(values), batch)]
                        ) if len(values) else np.zeros((0, EMBEDDING_DIM))


def user_embeddings(model: MovielensModel, users: Sequence[str]) -> np.ndarray:
  return _batched(model.user_model, users)


def movie_embeddings(model: MovielensModel,
                     movies: Sequence[str]) -> np.ndarray:
  return _batched(model.movie_model, movies)


def predict_ratings(model: MovielensModel, users: Sequence[str],
                    movies: Sequence[str], batch: int = 8192) -> np.ndarray:
  """The rating head on (user, movie) pairs."""
  out = []
  users = np.asarray(users, dtype=object).astype(str)
  movies = np.asarray(movies, dtype=object).astype(str)
  for i in range(0, len(users), batch):
    _, _, r = model({"user_id": tf.constant(users[i:i + batch]),
                     "movie_id": tf.constant(movies[i:i + batch])})
    out.append(r.numpy()[:, 0])
  return np.concatenate(out) if out else np.zeros(0)
