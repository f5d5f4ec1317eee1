"""StatisticsGen: per-feature statistics of each split, as TFDV writes them.

For every feature of the Examples artifact, per split: how many examples
have it and how many values each holds; for numbers mean, standard
deviation, zeros, min, median, max, an equal-width and a quantile
histogram; for strings the distinct count, the top values, the average
length and a rank histogram of the most frequent values. The output is
TFX's layout and format, `Split-<name>/FeatureStats.pb`, a binary
tensorflow_metadata `DatasetFeatureStatisticsList`, so TFDV, Facets or a
TFX ExampleValidator elsewhere read it unchanged.

Why by hand: TFDV computes exactly this, but it cannot be installed beside
TFX 1.21's libraries here (see ARCHITECTURE.md). The pieces TFDV builds on
are used instead: tfx_bsl's decoder turns serialized tf.Examples into Arrow
record batches (TFDV's own input), and every statistic is a Beam combiner
(per-key merges, Beam's ApproximateQuantiles, Top and Count), so the step
scales out on Flink or Dataflow like the rest of the pipeline.
"""

from __future__ import annotations

import math
import os
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa
from tensorflow_metadata.proto.v0 import statistics_pb2

from components import beam_runtime
from contracts import artifacts

STATS_FILE = "FeatureStats.pb"  # TFX's name, one per split directory
# TFDV's defaults: 20 top values, a rank histogram of the 1,000 most
# frequent, 10 buckets in each numeric histogram.
TOP_VALUES = 20
RANK_HISTOGRAM_BUCKETS = 1000
HISTOGRAM_BUCKETS = 10
_BATCH = dict(min_batch_size=256, max_batch_size=2048)

NUMERIC = "numeric"
STRING = "string"


def stats_path(statistics_uri: str, split: str) -> str:
  return os.path.join(artifacts.split_dir(statistics_uri, split), STATS_FILE)


def read_statistics(statistics_uri: str, split: str
                    ) -> statistics_pb2.DatasetFeatureStatistics:
  """The one dataset of a split's FeatureStats.pb."""
  stats = statistics_pb2.DatasetFeatureStatisticsList()
  with open(stats_path(statistics_uri, split), "rb") as f:
    stats.ParseFromString(f.read())
  if not stats.datasets:  # an empty split writes an empty list
    return statistics_pb2.DatasetFeatureStatistics(name=split, num_examples=0)
  return stats.datasets[0]


def feature_stats(dataset: statistics_pb2.DatasetFeatureStatistics
                  ) -> dict[str, statistics_pb2.FeatureNameStatistics]:
  """Feature name -> its statistics."""
  return {f.path.step[0] if f.path.step else f.name: f
          for f in dataset.features}


# ---------------------------------------------------------------------------
# Partial statistics of one record batch, and how they merge.


def _kind(arrow_type: pa.DataType) -> str:
  return STRING if (pa.types.is_binary(arrow_type) or
                    pa.types.is_large_binary(arrow_type) or
                    pa.types.is_string(arrow_type) or
                    pa.types.is_large_string(arrow_type)) else NUMERIC


def _is_float(arrow_type: pa.DataType) -> bool:
  return pa.types.is_floating(arrow_type)


def _new_partial(kind: str, is_float: bool = False) -> dict[str, Any]:
  return {"kind": kind, "float": is_float, "present": 0, "min_values": None,
          "max_values": None, "values": 0, "sum": 0.0, "sum_sq": 0.0,
          "min": None, "max": None, "zeros": 0, "nan": 0, "length": 0}


def _merge(a: dict[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
  if a["kind"] != b["kind"]:
    # One feature both bytes and numbers across examples: tf.Example
    # allows it, the schema does not. Kept as "mixed" for the validator.
    a["kind"] = "mixed"
  a["float"] = a["float"] or b["float"]
  for key in ("present", "values", "sum", "sum_sq", "zeros", "nan",
              "length"):
    a[key] += b[key]
  for key, pick in (("min_values", min), ("min", min), ("max_values", max),
                    ("max", max)):
    if b[key] is not None:
      a[key] = b[key] if a[key] is None else pick(a[key], b[key])
  return a


class MergePartials(beam.CombineFn):
  """Merges the per-batch partial statistics of one (split, feature)."""

  def create_accumulator(self) -> Optional[dict[str, Any]]:
    return None

  def add_input(self, acc, partial):
    return dict(partial) if acc is None else _merge(acc, partial)

  def merge_accumulators(self, accumulators):
    out = None
    for acc in accumulators:
      if acc is not None:
        out = dict(acc) if out is None else _merge(out, acc)
    return out

  def extract_output(self, acc):
    return acc


def _flat(column: pa.Array) -> tuple[np.ndarray, pa.Array]:
  """(values per present example, all values) of a list column."""
  present = column.is_valid()
  lengths = pa.compute.list_value_length(column).to_numpy(
      zero_copy_only=False)
  mask = present.to_numpy(zero_copy_only=False)
  return lengths[mask].astype(np.int64), pa.compute.list_flatten(column)


def batch_partials(record_batch: pa.RecordBatch
                   ) -> Iterator[tuple[str, dict[str, Any]]]:
  """(feature, partial statistics) of each column of one record batch."""
  for name, column in zip(record_batch.schema.names, record_batch.columns):
    value_type = column.type.value_type
    kind = _kind(value_type)
    if pa.types.is_null(value_type):
      kind = NUMERIC  # every example of the batch lacks it or is empty
    p = _new_partial(kind, _is_float(value_type))
    counts, values = _flat(column)
    p["present"] = int(counts.size)
    if counts.size:
      p["min_values"], p["max_values"] = int(counts.min()), int(counts.max())
    p["values"] = int(counts.sum())
    if kind == STRING:
      p["length"] = int(pa.compute.sum(
          pa.compute.binary_length(values)).as_py() or 0) if len(values) else 0
    elif len(values) and not pa.types.is_null(value_type):
      x = values.to_numpy(zero_copy_only=False).astype(np.float64)
      nan = np.isnan(x)
      p["nan"] = int(nan.sum())
      x = x[~nan]
      if x.size:
        p.update(sum=float(x.sum()), sum_sq=float((x * x).sum()),
                 min=float(x.min()), max=float(x.max()),
                 zeros=int((x == 0).sum()))
    yield name, p


def batch_numbers(record_batch: pa.RecordBatch
                  ) -> Iterator[tuple[str, list[float]]]:
  """(feature, its finite values) of each numeric column of a batch."""
  for name, column in zip(record_batch.schema.names, record_batch.columns):
    value_type = column.type.value_type
    if _kind(value_type) != NUMERIC or pa.types.is_null(value_type):
      continue
    x = pa.compute.list_flatten(column).to_numpy(
        zero_copy_only=False).astype(np.float64)
    x = x[np.isfinite(x)]
    if x.size:
      yield name, x.tolist()


def batch_strings(record_batch: pa.RecordBatch
                  ) -> Iterator[tuple[tuple[str, bytes], int]]:
  """((feature, value), count) of each string column of a batch."""
  for name, column in zip(record_batch.schema.names, record_batch.columns):
    if _kind(column.type.value_type) != STRING:
      continue
    values = pa.compute.list_flatten(column)
    if not len(values):
      continue
    counted = pa.compute.value_counts(values)
    for value, count in zip(counted.field("values").to_pylist(),
                            counted.field("counts").to_pylist()):
      yield (name, value), count


def _bucket_counts(name_values: tuple[str, list[float]],
                   ranges: Mapping[str, tuple[float, float]]
                   ) -> Iterator[tuple[tuple[str, int], int]]:
  name, values = name_values
  low, high = ranges[name]
  x = np.asarray(values, dtype=np.float64)
  if high <= low:
    yield (name, 0), int(x.size)
    return
  index = np.minimum(((x - low) / (high - low) * HISTOGRAM_BUCKETS).astype(
      np.int64), HISTOGRAM_BUCKETS - 1)
  for bucket, count in zip(*np.unique(index, return_counts=True)):
    yield (name, int(bucket)), int(count)


# ---------------------------------------------------------------------------
# Assembling the protos.


def feature_proto(name: str, partial: Mapping[str, Any], num_examples: int,
                  quantiles: Optional[Sequence[float]] = None,
                  buckets: Optional[Mapping[int, int]] = None,
                  ranked: Optional[Sequence[tuple[int, bytes]]] = None,
                  unique: int = 0) -> statistics_pb2.FeatureNameStatistics:
  """One feature's FeatureNameStatistics from its merged parts."""
  f = statistics_pb2.FeatureNameStatistics()
  f.path.step.append(name)
  common = statistics_pb2.CommonStatistics(
      num_non_missing=partial["present"],
      num_missing=max(num_examples - partial["present"], 0),
      min_num_values=partial["min_values"] or 0,
      max_num_values=partial["max_values"] or 0,
      avg_num_values=(partial["values"] / partial["present"]
                      if partial["present"] else 0.0),
      tot_num_values=partial["values"])
  if partial["kind"] == STRING:
    f.type = statistics_pb2.FeatureNameStatistics.STRING
    s = f.string_stats
    s.common_stats.CopyFrom(common)
    s.unique = unique
    s.avg_length = (partial["length"] / partial["values"]
                    if partial["values"] else 0.0)
    for rank, (count, value) in enumerate(ranked or []):
      label = value.decode("utf-8", "replace")
      if rank < TOP_VALUES:
        s.top_values.add(value=label, frequency=count)
      s.rank_histogram.buckets.add(low_rank=rank, high_rank=rank,
                                   label=label, sample_count=count)
    return f
  f.type = (statistics_pb2.FeatureNameStatistics.FLOAT if partial["float"]
            else statistics_pb2.FeatureNameStatistics.INT)
  n = partial["values"] - partial["nan"]
  s = f.num_stats
  s.common_stats.CopyFrom(common)
  if n:
    mean = partial["sum"] / n
    s.mean = mean
    s.std_dev = math.sqrt(max(partial["sum_sq"] / n - mean * mean, 0.0))
    s.min, s.max = partial["min"], partial["max"]
    s.num_zeros = partial["zeros"]
  standard = s.histograms.add(
      type=statistics_pb2.Histogram.STANDARD, num_nan=partial["nan"])
  if n:
    low, high = partial["min"], partial["max"]
    width = (high - low) / HISTOGRAM_BUCKETS
    for b in range(HISTOGRAM_BUCKETS if high > low else 1):
      standard.buckets.add(
          low_value=low + b * width if high > low else low,
          high_value=low + (b + 1) * width if high > low else high,
          sample_count=float((buckets or {}).get(b, 0)))
  if quantiles:
    s.median = quantiles[len(quantiles) // 2]
    q = s.histograms.add(type=statistics_pb2.Histogram.QUANTILES,
                         num_nan=partial["nan"])
    per_bucket = n / (len(quantiles) - 1)
    for low, high in zip(quantiles[:-1], quantiles[1:]):
      q.buckets.add(low_value=low, high_value=high, sample_count=per_bucket)
  return f


def dataset_proto(split: str, num_examples: int,
                  features: Iterable[statistics_pb2.FeatureNameStatistics]
                  ) -> statistics_pb2.DatasetFeatureStatisticsList:
  out = statistics_pb2.DatasetFeatureStatisticsList()
  d = out.datasets.add(name=split, num_examples=num_examples)
  for f in sorted(features, key=lambda f: f.path.step[0]):
    d.features.add().CopyFrom(f)
  return out


# ---------------------------------------------------------------------------
# The Beam pipeline.


class DecodeExamples(beam.DoFn):
  """Serialized tf.Examples (a batch) -> one Arrow RecordBatch.

  No schema is given to the decoder: it infers each feature's type from
  the data, so a feature that drifted from the schema's type shows up in
  the statistics for the validator to flag instead of failing here.
  """

  def setup(self):
    from tfx_bsl.coders import example_coder  # pylint: disable=g-import-not-at-top
    self._decoder = example_coder.ExamplesToRecordBatchDecoder()

  def process(self, batch: list[bytes]):
    yield self._decoder.DecodeBatch(batch)


def _split_statistics(p: beam.Pipeline, examples_uri: str, split: str,
                      out_path: str) -> None:
  tag = split.capitalize()
  batches = (p
             | f"Read{tag}" >> beam.io.ReadFromTFRecord(
                 artifacts.split_pattern(examples_uri, split))
             | f"Batch{tag}" >> beam.BatchElements(**_BATCH)
             | f"Decode{tag}" >> beam.ParDo(DecodeExamples()))
  num_examples = (batches
                  | f"Rows{tag}" >> beam.Map(lambda b: b.num_rows)
                  | f"Examples{tag}" >> beam.CombineGlobally(sum))
  partials = (batches
              | f"Partials{tag}" >> beam.FlatMap(batch_partials)
              | f"Merge{tag}" >> beam.CombinePerKey(MergePartials()))
  numbers = batches | f"Numbers{tag}" >> beam.FlatMap(batch_numbers)
  quantiles = numbers | f"Quantiles{tag}" >> (
      beam.transforms.stats.ApproximateQuantiles.PerKey(
          HISTOGRAM_BUCKETS + 1, input_batched=True))
  ranges = (partials
            | f"Ranges{tag}" >> beam.Filter(lambda kv: kv[1]["min"] is not None)
            | f"Range{tag}" >> beam.Map(
                lambda kv: (kv[0], (kv[1]["min"], kv[1]["max"]))))
  buckets = (numbers
             | f"Bucket{tag}" >> beam.FlatMap(
                 _bucket_counts, ranges=beam.pvalue.AsDict(ranges))
             | f"SumBuckets{tag}" >> beam.CombinePerKey(sum)
             | f"ByFeature{tag}" >> beam.Map(
                 lambda kv: (kv[0][0], (kv[0][1], kv[1])))
             | f"Buckets{tag}" >> beam.GroupByKey()
             | f"BucketDict{tag}" >> beam.MapTuple(lambda k, v: (k, dict(v))))
  value_counts = (batches
                  | f"Strings{tag}" >> beam.FlatMap(batch_strings)
                  | f"CountValues{tag}" >> beam.CombinePerKey(sum)
                  | f"KeyValues{tag}" >> beam.Map(
                      lambda kv: (kv[0][0], (kv[1], kv[0][1]))))
  ranked = value_counts | f"Top{tag}" >> beam.combiners.Top.PerKey(
      RANK_HISTOGRAM_BUCKETS, key=lambda cv: (cv[0], _neg_bytes(cv[1])))
  unique = value_counts | f"Unique{tag}" >> beam.combiners.Count.PerKey()

  def build(kv, num_examples):
    name, parts = kv
    partial = parts["partial"][0]
    return feature_proto(
        name, partial, num_examples,
        quantiles=(parts["quantiles"] or [None])[0],
        buckets=(parts["buckets"] or [None])[0],
        ranked=(parts["ranked"] or [None])[0],
        unique=(parts["unique"] or [0])[0])

  _ = ({"partial": partials, "quantiles": quantiles, "buckets": buckets,
        "ranked": ranked, "unique": unique}
       | f"Join{tag}" >> beam.CoGroupByKey()
       | f"Features{tag}" >> beam.Map(
           build, num_examples=beam.pvalue.AsSingleton(num_examples))
       | f"Collect{tag}" >> beam.combiners.ToList()
       | f"Dataset{tag}" >> beam.Map(
           lambda features, n, s=split: dataset_proto(s, n, features),
           n=beam.pvalue.AsSingleton(num_examples))
       | f"Serialize{tag}" >> beam.Map(lambda d: d.SerializeToString())
       | f"Write{tag}" >> beam.io.WriteToText(
           out_path, shard_name_template="", append_trailing_newlines=False))


def _neg_bytes(value: bytes) -> tuple[int, ...]:
  """A sort key under which smaller bytes rank first among equal counts."""
  return tuple(-b for b in value) + (1,)


def run_statistics_gen(examples_uri: str, statistics_uri: str, run_id: str,
                       beam_args: Sequence[str] = ()) -> dict[str, Any]:
  """Computes each split's statistics; publishes the artifact atomically."""
  splits = artifacts.split_names(examples_uri)
  with artifacts.write_artifact(
      statistics_uri, "ExampleStatistics", "StatisticsGen", run_id,
      {"splits": splits}, {"examples": examples_uri}) as w:
    with beam.Pipeline(options=beam_runtime.pipeline_options(beam_args)) as p:
      for split in splits:
        os.makedirs(artifacts.split_dir(w.uri, split))
        _split_statistics(p, examples_uri, split, stats_path(w.uri, split))
    w.summary = {}
    for split in splits:
      d = read_statistics(w.uri, split)
      w.summary[split] = {"examples": d.num_examples,
                          "features": len(d.features)}
  return w.summary
