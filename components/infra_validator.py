"""Infra validation: can the candidate be served at all, and fast enough?

As TFX's InfraValidator does, the candidate is loaded the way the server
loads it: in a fresh process with nothing but TensorFlow imported (no TFT, no
project code that could hide a missing asset or op). Every signature the
project's API names must exist; the model's own warmup requests
(assets.extra/tf_serving_warmup_requests) are replayed, and every other
signature is called with ids taken from them; outputs must be finite with the
request's batch size, and the p95 latency of the warmup requests must be
within the budget. The parent process only reads the child's JSON report, so
a crash or hang in the child is a failed check, never a crashed evaluator.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

from contracts import model_layout

REQUIRED_SIGNATURES = ("serving_default", "recommend", "recommend_excluding",
                       "predict_examples", "embed_user", "embed_item")


def _check(name: str, passed: bool, detail: str) -> dict[str, Any]:
  return {"check": name, "passed": bool(passed), "detail": detail}


def _validate_in_this_process(model_dir: str, budget_ms: float,
                              repeats: int) -> dict[str, Any]:
  """Runs in the fresh child process."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tensorflow_serving.apis import prediction_log_pb2  # pylint: disable=g-import-not-at-top

  checks = []
  start = time.time()
  loaded = tf.saved_model.load(model_dir)
  checks.append(_check("loads", True,
                       f"loaded in {time.time() - start:.1f}s"))
  missing = [s for s in REQUIRED_SIGNATURES if s not in loaded.signatures]
  checks.append(_check("signatures", not missing,
                       f"missing: {missing}" if missing else
                       f"all {len(REQUIRED_SIGNATURES)} present"))

  path = model_layout.warmup_path(model_dir)
  requests = []
  if os.path.exists(path):
    for rec in tf.data.TFRecordDataset(path):
      log = prediction_log_pb2.PredictionLog.FromString(rec.numpy())
      req = log.predict_log.request
      requests.append((req.model_spec.signature_name or "serving_default",
                       {k: tf.make_ndarray(v) for k, v in req.inputs.items()}))
  checks.append(_check("warmup_requests", bool(requests),
                       f"{len(requests)} records in {model_layout.WARMUP_FILE}"))

  def call(signature, inputs):
    fn = loaded.signatures[signature]
    out = fn(**{k: tf.constant(v) for k, v in inputs.items()})
    return {k: v.numpy() for k, v in out.items()}

  def outputs_ok(signature, inputs, out, batch):
    bad = [k for k, v in out.items() if v.shape[:1] != (batch,) or (
        v.dtype.kind == "f" and not np.all(np.isfinite(v)))]
    return _check(f"outputs:{signature}", not bad,
                  f"outputs with a wrong batch size or non-finite values: "
                  f"{bad}" if bad else
                  f"{sorted(out)} finite, batch {batch}")

  users, items = [b"__infra_user__"], [b"__infra_item__"]
  latencies = {}
  for signature, inputs in requests:
    if signature not in loaded.signatures:
      checks.append(_check(f"outputs:{signature}", False,
                           "warmup request names a missing signature"))
      continue
    users += list(inputs.get("user_id", []))
    items += list(inputs.get("item_id", []))
    try:
      out = call(signature, inputs)
    except Exception as e:  # pylint: disable=broad-except
      checks.append(_check(f"outputs:{signature}", False, repr(e)[:500]))
      continue
    batch = len(next(iter(inputs.values())))
    checks.append(outputs_ok(signature, inputs, out, batch))
    times = []
    for _ in range(repeats):
      t = time.perf_counter()
      call(signature, inputs)
      times.append((time.perf_counter() - t) * 1000)
    latencies[signature] = {"p50_ms": float(np.percentile(times, 50)),
                            "p95_ms": float(np.percentile(times, 95))}
    checks.append(_check(
        f"latency:{signature}", latencies[signature]["p95_ms"] <= budget_ms,
        f"p95 {latencies[signature]['p95_ms']:.1f} ms "
        f"(budget {budget_ms:g} ms) over {repeats} calls"))

  n = len(users)
  ex = []
  for u, i in zip(users, items * n):
    e = tf.train.Example()
    e.features.feature["user_id"].bytes_list.value.append(u)
    e.features.feature["item_id"].bytes_list.value.append(i)
    ex.append(e.SerializeToString())
  other_calls = {
      "embed_user": {"user_id": np.array(users, dtype=object)},
      "embed_item": {"item_id": np.array(items, dtype=object)},
      "predict_examples": {"examples": np.array(ex, dtype=object)},
      "recommend_excluding": {
          "user_id": np.array(users, dtype=object),
          "exclude_item_ids": np.array([[i] for i in (items * n)[:n]],
                                       dtype=object),
          "k": np.array(5, dtype=np.int32)},
  }
  for signature, inputs in other_calls.items():
    if signature not in loaded.signatures:
      continue
    try:
      out = call(signature, inputs)
      checks.append(outputs_ok(signature, inputs, out,
                               len(next(iter(inputs.values())))))
    except Exception as e:  # pylint: disable=broad-except
      checks.append(_check(f"outputs:{signature}", False, repr(e)[:500]))
  return {"checks": checks, "latency_ms": latencies}


class Pending:
  """A validation running in its child process; `result()` waits for it."""

  def __init__(self, model_dir: str, budget_ms: float, repeats: int,
               timeout_s: float):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("TF_USE_LEGACY_KERAS", None)  # as a bare TF Serving would
    code = ("import json, sys; from components.infra_validator import "
            "_validate_in_this_process as v; print('INFRA_RESULT ' + "
            "json.dumps(v(sys.argv[1], float(sys.argv[2]), int(sys.argv[3]))))")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    self._timeout_s = timeout_s
    self._proc = subprocess.Popen(
        [sys.executable, "-c", code, model_dir, str(budget_ms), str(repeats)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        cwd=root)

  def kill(self) -> None:
    """Stops the child if it is still running (no-op once collected)."""
    if self._proc.poll() is None:
      self._proc.kill()
      self._proc.communicate()

  def result(self) -> dict[str, Any]:
    try:
      stdout, stderr = self._proc.communicate(timeout=self._timeout_s)
    except subprocess.TimeoutExpired:
      self._proc.kill()
      self._proc.communicate()
      result = {"checks": [_check("loads", False,
                                  f"no answer within {self._timeout_s:g}s")]}
    else:
      lines = [line for line in stdout.splitlines()
               if line.startswith("INFRA_RESULT ")]
      if self._proc.returncode != 0 or not lines:
        tail = (stderr.strip().splitlines() or ["no output"])[-1]
        result = {"checks": [_check(
            "loads", False, f"exit {self._proc.returncode}: {tail[:500]}")]}
      else:
        result = json.loads(lines[-1][len("INFRA_RESULT "):])
    result["passed"] = all(c["passed"] for c in result["checks"])
    return result


def start(model_dir: str, budget_ms: float = 250.0, repeats: int = 20,
          timeout_s: float = 300.0) -> Pending:
  """Starts validating in a fresh process; overlaps with other work."""
  return Pending(model_dir, budget_ms, repeats, timeout_s)


def validate(model_dir: str, budget_ms: float = 250.0, repeats: int = 20,
             timeout_s: float = 300.0) -> dict[str, Any]:
  """Validates in a fresh process; returns {"passed", "checks", ...}."""
  return start(model_dir, budget_ms, repeats, timeout_s).result()
