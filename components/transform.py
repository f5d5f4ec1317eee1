"""Transform: TensorFlow Transform on Beam, analyzed on the train split only.

The preprocessing_fn turns raw example fields into model inputs: vocabularies
with an out-of-vocabulary bucket for ids and categorical features (so an id
first seen at serving time still maps somewhere), the event's history of
earlier items through the item vocabulary, multi-valued categories, title
tokens and tags, a z-scored year clipped to its trained range, cyclical
time-of-event features, and the labels with per-task weights that mask
labels a source does not have. Its
graph is exported inside the model (trainer.export), so clients send raw
values.
"""

from __future__ import annotations

import os
import shutil
from typing import Any, Mapping, Optional, Sequence

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tfx_bsl.coders import example_coder
from tfx_bsl.public import tfxio

from contracts import artifacts
from components import beam_runtime
from contracts import features as F
from contracts import records as r
from components import schema
from components import time_features

TRANSFORM_FN_DIR = "transform_fn"  # as written by tft_beam.WriteTransformFn


def _tokenize_title(title: tf.Tensor) -> tf.SparseTensor:
  text = tf.strings.regex_replace(tf.strings.lower(title), r"[^a-z0-9]+", " ")
  return tf.strings.split(text).to_sparse()


def bounded_year(raw_year: tf.Tensor) -> dict[str, tf.Tensor]:
  """The release year as the model reads it, never outside its trained range.

  A linear feature extrapolates: an item from 2027 scored by a model trained
  on 1902-2018 gets a z-score no training row had, and the candidate tower's
  projection turns it into an arbitrarily large push. So the year is clipped
  to the train split's [min, max] before it is z-scored; the bounds are
  analyzer constants of this graph, which serving and `mtrec catalog refresh`
  run, so neither can extrapolate. YEAR_CLIPPED carries the clipped year with
  the range in its schema domain (TFT's set_tensor_schema_override), where
  the refresh reads it to say which new items fall outside
  (trainer.inputs.trained_range).
  """
  # float64: summed in float32, 60k years near 2000 lose the mean's low bits
  # in an order that depends on the runner's bundling, so the same data gave
  # z-scores 1e-5 apart on two runners. In float64 both round to one float32.
  year = tf.cast(raw_year, tf.float64)
  known = year > 0
  known_years = tf.boolean_mask(year, known)
  low, high = tft.min(known_years), tft.max(known_years)
  clipped = tf.clip_by_value(year, low, high)
  mean = tft.mean(known_years)
  std = tf.sqrt(tft.var(known_years)) + 1e-6
  year_clipped = tf.cast(tf.where(known, clipped, tf.zeros_like(year)),
                         tf.int64)
  tft.schema_inference.set_tensor_schema_override(
      year_clipped, tf.cast(low, tf.int64), tf.cast(high, tf.int64))
  year_z = tf.where(known, (clipped - mean) / std, tf.zeros_like(year))
  return {F.YEAR_Z: tf.cast(year_z, tf.float32),
          F.YEAR_KNOWN: tf.cast(known, tf.float32),
          F.YEAR_CLIPPED: year_clipped}


def make_preprocessing_fn(like_threshold: float, max_title_tokens: int):
  """Returns the TFT preprocessing_fn for the given transform settings."""

  def preprocessing_fn(inputs: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    out[F.USER_ID] = tft.compute_and_apply_vocabulary(
        inputs[r.USER_ID], num_oov_buckets=1, vocab_filename=F.USER_ID_VOCAB)
    # One item vocabulary, from the train split's events, indexes both the
    # event's item and the items of its history, so the model can share one
    # item embedding table between the two.
    item_vocab = tft.vocabulary(inputs[r.ITEM_ID],
                                vocab_filename=F.ITEM_ID_VOCAB)
    out[F.ITEM_ID] = tft.apply_vocabulary(inputs[r.ITEM_ID], item_vocab,
                                          num_oov_buckets=1)
    if schema.HISTORY in inputs:  # examples written before ExampleGen had it
      out[F.HISTORY] = tft.apply_vocabulary(inputs[schema.HISTORY],
                                            item_vocab, num_oov_buckets=1)
    for name in schema.user_features_of(inputs):
      out[F.user_attribute(name)] = tft.compute_and_apply_vocabulary(
          inputs[schema.user_feature_key(name)], num_oov_buckets=1,
          vocab_filename=F.user_attribute_vocab(name))
    out[F.CATEGORIES] = tft.compute_and_apply_vocabulary(
        inputs[r.CATEGORIES], num_oov_buckets=1,
        vocab_filename=F.CATEGORIES_VOCAB)
    out[F.TITLE_TOKENS] = tft.compute_and_apply_vocabulary(
        _tokenize_title(inputs[r.TITLE]), top_k=max_title_tokens,
        num_oov_buckets=1, vocab_filename=F.TITLE_TOKENS_VOCAB)
    # Free-text tags: lower-cased; a tag seen on fewer than two training
    # events is noise to an embedding table and goes to the OOV bucket.
    tags = inputs[r.TAGS]
    out[F.TAGS] = tft.compute_and_apply_vocabulary(
        tf.SparseTensor(tags.indices, tf.strings.lower(tags.values),
                        tags.dense_shape),
        frequency_threshold=2, num_oov_buckets=1, vocab_filename=F.TAGS_VOCAB)

    out.update(bounded_year(inputs[r.YEAR]))

    out[F.HOUR], out[F.WEEKDAY] = time_features.hour_and_weekday(
        inputs[r.TIMESTAMP])

    rating = inputs[r.RATING]
    has_rating = rating >= 0
    out[F.RATING] = tf.where(has_rating, rating, tf.zeros_like(rating))
    out[F.RATING_WEIGHT] = tf.cast(has_rating, tf.float32)
    explicit_like = inputs[r.LIKE]
    derived_like = tf.cast(rating >= like_threshold, tf.int64)
    like = tf.where(explicit_like >= 0, explicit_like, derived_like)
    out[F.LIKE] = tf.cast(like, tf.float32)
    out[F.LIKE_WEIGHT] = tf.cast(
        tf.logical_or(explicit_like >= 0, has_rating), tf.float32)
    watch = inputs[r.WATCH_FRACTION]
    has_watch = watch >= 0
    out[F.WATCH_FRACTION] = tf.where(has_watch, watch, tf.zeros_like(watch))
    out[F.WATCH_FRACTION_WEIGHT] = tf.cast(has_watch, tf.float32)
    out[F.RETRIEVAL_WEIGHT] = tf.cast(inputs[r.CLICK] > 0, tf.float32)
    return out

  return preprocessing_fn


class _RecordBatchToExamples(beam.DoFn):
  """Arrow RecordBatches from TFT -> serialized tf.Examples, as TFX does.

  TFX's Transform executor asks TFT for record batches
  (output_record_batches=True) and encodes them with tfx_bsl's C++ encoder;
  TFT's instance dicts (one Python dict per row, encoded by
  ExampleProtoCoder) are the slow path TFT warns about on every run.
  """

  def __init__(self, schema):
    self._schema = schema
    self._encoder = None

  def setup(self):
    self._encoder = example_coder.RecordBatchToExamplesEncoder(self._schema)

  def process(self, batch_and_passthrough):
    record_batch, passthrough = batch_and_passthrough
    if passthrough:  # only with passthrough_keys, which this step never sets
      raise ValueError(f"unexpected passthrough features {sorted(passthrough)}")
    yield from self._encoder.encode(record_batch)


def _write(pcoll, metadata, directory: str, label: str):
  return (pcoll
          | f"Encode{label}" >> beam.ParDo(
              _RecordBatchToExamples(metadata.schema))
          | f"Write{label}" >> beam.io.WriteToTFRecord(
              os.path.join(directory, "transformed_examples"),
              file_name_suffix=".gz", compression_type=CompressionTypes.GZIP))


def run_transform(
    examples_uri: str,
    transform_graph_uri: str,
    transformed_examples_uri: str,
    run_id: str,
    like_threshold: float = 4.0,
    max_title_tokens: int = 20000,
    beam_args: Sequence[str] = (),
    parameters: Optional[Mapping[str, Any]] = None,
) -> None:
  """Analyzes the train split, transforms every split, publishes them.

  Only train reaches the analyzers (vocabularies, means, ranges), so the
  validation and eval splits change nothing in the graph.
  """
  raw_schema = schema.read_schema(examples_uri)
  preprocessing_fn = make_preprocessing_fn(like_threshold, max_title_tokens)
  params = dict(parameters or {}, like_threshold=like_threshold,
                max_title_tokens=max_title_tokens)
  inputs = {"examples": examples_uri}
  splits = artifacts.split_names(examples_uri)
  if artifacts.TRAIN not in splits:
    raise ValueError(f"Transform: {examples_uri} has no train split "
                     f"(splits: {splits})")
  others = [s for s in splits if s != artifacts.TRAIN]
  with artifacts.scratch_dir(transform_graph_uri) as scratch:
    with beam.Pipeline(options=beam_runtime.pipeline_options(beam_args)) as p:
      with tft_beam.Context(temp_dir=os.path.join(scratch, "tft_tmp")):
        sources = {
            split: tfxio.TFExampleRecord(
                file_pattern=artifacts.split_pattern(examples_uri, split),
                schema=raw_schema, telemetry_descriptors=["mtrec", "Transform"])
            for split in splits
        }
        # The train split is read twice, once to analyze and once to
        # transform, as TFX's Transform executor does. One read feeding both
        # would make the runner hold the whole decoded split until the
        # analyzers finish (the transform needs their results): on Beam's
        # local runner that is all of it in memory.
        transform_fn = (
            (p | "ReadTrainToAnalyze" >> sources[artifacts.TRAIN].BeamSource(),
             sources[artifacts.TRAIN].TensorAdapterConfig())
            | "Analyze" >> tft_beam.AnalyzeDataset(preprocessing_fn))
        _ = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(
            os.path.join(scratch, "graph"))
        for split in splits:
          label = split.capitalize()
          rows = p | f"Read{label}" >> sources[split].BeamSource()
          out, metadata = (((rows, sources[split].TensorAdapterConfig()),
                     transform_fn)
                    | f"Transform{label}" >> tft_beam.TransformDataset(
                        output_record_batches=True))
          _write(out, metadata,
                 os.path.join(scratch, "examples", f"Split-{split}"), label)

    with artifacts.write_artifact(transform_graph_uri, "TransformGraph",
                                  "Transform", run_id, params, inputs) as w:
      for name in os.listdir(os.path.join(scratch, "graph")):
        shutil.move(os.path.join(scratch, "graph", name), w.uri)
      tft_output = tft.TFTransformOutput(w.uri)
      w.summary = {
          "vocabulary_sizes": {
              name: tft_output.vocabulary_size_by_name(name)
              for name in _vocab_names(tft_output)
          },
          "transformed_features": sorted(
              tft_output.transformed_feature_spec()),
      }
    with artifacts.write_artifact(transformed_examples_uri, "Examples",
                                  "Transform", run_id, params, inputs) as w:
      for split in splits:
        shutil.move(os.path.join(scratch, "examples", f"Split-{split}"), w.uri)
      w.summary = {"splits": [artifacts.TRAIN, *others]}


def _vocab_names(tft_output: tft.TFTransformOutput) -> list[str]:
  vocab_dir = os.path.join(tft_output.transform_savedmodel_dir, "assets")
  if not os.path.isdir(vocab_dir):
    return []
  return sorted(os.listdir(vocab_dir))
