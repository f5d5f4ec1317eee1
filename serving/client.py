"""The client library of serving: calls to a TF Serving compatible server.

The client is written against the official TF Serving stubs only, so it works
unchanged against tensorflow_model_server in production and against
`serving.model_server` locally. Errors are not translated: callers see the
server's `grpc.RpcError` (NOT_FOUND for an unknown model, INVALID_ARGUMENT for
a bad input, ...) exactly as TF Serving reports it.

It holds the channel (PredictionClient: Predict, metadata, status, waiting
for a model), the request building and the response decoding into Python
rows (recommend, score). The `mtrec` commands that print those rows are
client_cli.py's, so importing the library pulls in no argument parsing or
printing.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Mapping, Optional, Sequence

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2

from serving import apis
from serving import tensors

RECOMMEND_SIGNATURE = "recommend"
WEIGHTED_SIGNATURE = "recommend_weighted"
FUSION_SIGNATURE = "fusion"
# Outputs every `recommend` signature has; any other output shaped like
# `item_ids` is a per-item prediction of one ranking task.
_ITEM_IDS, _TITLES, _SCORES = "item_ids", "titles", "scores"
_USER_ID = "user_id"

# While a server starts, a model loads or a connection is re-established.
_NOT_READY_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.NOT_FOUND,
                    grpc.StatusCode.DEADLINE_EXCEEDED)
_READY_POLL_SECONDS = 0.2


@dataclasses.dataclass(frozen=True)
class ModelMetadata:
  """What GetModelMetadata says about the served version of a model."""

  name: str
  version: int
  signature_defs: dict[str, meta_graph_pb2.SignatureDef]


class PredictionClient:
  """A gRPC connection to a TF Serving compatible server.

  Use it as a context manager, or call close(), to release the channel:

    with PredictionClient("localhost:8500") as client:
      client.wait_until_ready("mtrec", timeout=60)
      outputs = client.predict("mtrec", {"user_id": ["42"], "item_id": ["7"]})
  """

  def __init__(self, target: str = "localhost:8500", timeout: float = 10.0):
    """Opens a channel (lazily: nothing connects before the first call).

    Args:
      target: "host:port" of the server.
      timeout: deadline in seconds of every call.
    """
    self._target = target
    self._timeout = timeout
    self._channel = grpc.insecure_channel(
        target,
        options=[("grpc.max_send_message_length", -1),
                 ("grpc.max_receive_message_length", -1)])
    self._prediction = apis.PredictionServiceStub(self._channel)
    self._models = apis.ModelServiceStub(self._channel)

  @property
  def target(self) -> str:
    return self._target

  def close(self) -> None:
    self._channel.close()

  def __enter__(self) -> PredictionClient:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

  def predict(self,
              model_name: str,
              inputs: Mapping[str, Any],
              signature_name: str = apis.DEFAULT_SERVING_SIGNATURE,
              version: Optional[int] = None) -> dict[str, np.ndarray]:
    """Runs a signature of the served model.

    Args:
      model_name: the server's model name.
      inputs: input alias -> array-like. Values are converted with
        tf.make_tensor_proto, so Python floats become float32 and ints int32;
        pass numpy arrays to pick the dtype. Strings become DT_STRING.
      signature_name: the SignatureDef to run.
      version: a specific loaded version; None means the served (latest) one.

    Returns:
      Output alias -> array; string outputs hold `bytes`.

    Raises:
      grpc.RpcError: with the server's status code and message.
    """
    request = predict_request(model_name, inputs, signature_name, version)
    response = self._prediction.Predict(request, timeout=self._timeout)
    return {alias: tensors.to_ndarray(proto)
            for alias, proto in response.outputs.items()}

  def metadata(self, model_name: str,
               version: Optional[int] = None) -> ModelMetadata:
    """The served version of a model and its SignatureDefs."""
    request = apis.GetModelMetadataRequest()
    request.model_spec.name = model_name
    if version is not None:
      request.model_spec.version.value = version
    request.metadata_field.append(apis.SIGNATURE_DEF_FIELD)
    response = self._prediction.GetModelMetadata(request, timeout=self._timeout)
    signature_def_map = apis.SignatureDefMap()
    if not response.metadata[apis.SIGNATURE_DEF_FIELD].Unpack(
        signature_def_map):
      raise ValueError(
          f"{self._target} answered GetModelMetadata with a"
          f" {response.metadata[apis.SIGNATURE_DEF_FIELD].type_url}, not a"
          " SignatureDefMap")
    return ModelMetadata(
        name=response.model_spec.name,
        version=response.model_spec.version.value,
        signature_defs=dict(signature_def_map.signature_def))

  def model_status(self, model_name: str) -> dict[int, str]:
    """Version -> state name ("AVAILABLE", "LOADING", "END", ...)."""
    return {
        status.version: apis.ModelVersionStatus.State.Name(status.state)
        for status in self._get_model_status(model_name, self._timeout)
    }

  def wait_until_ready(self, model_name: str, timeout: float = 60.0) -> int:
    """Waits until a version of the model is AVAILABLE and returns it.

    Rides out a server that is still starting (UNAVAILABLE) and a model that
    has no version loaded yet (NOT_FOUND, or a version still LOADING).

    Args:
      model_name: the server's model name.
      timeout: seconds to wait in total.

    Returns:
      The newest AVAILABLE version.

    Raises:
      TimeoutError: no version became available in time.
      grpc.RpcError: the server failed in a way waiting will not fix.
    """
    deadline = time.monotonic() + timeout
    last_problem = "no answer"
    use_model_service = True
    while True:
      remaining = deadline - time.monotonic()
      if remaining <= 0:
        raise TimeoutError(
            f"Model {model_name!r} at {self._target} is not available after"
            f" {timeout:g}s: {last_problem}")
      call_timeout = min(self._timeout, remaining)
      try:
        if use_model_service:
          available = [
              status.version
              for status in self._get_model_status(
                  model_name, call_timeout, wait_for_ready=True)
              if status.state == apis.ModelVersionStatus.State.AVAILABLE
          ]
          if available:
            return max(available)
          last_problem = "no version is AVAILABLE yet"
        else:
          request = apis.GetModelMetadataRequest()
          request.model_spec.name = model_name
          request.metadata_field.append(apis.SIGNATURE_DEF_FIELD)
          return self._prediction.GetModelMetadata(
              request, timeout=call_timeout,
              wait_for_ready=True).model_spec.version.value
      except grpc.RpcError as e:
        if use_model_service and e.code() == grpc.StatusCode.UNIMPLEMENTED:
          use_model_service = False  # A server without ModelService.
          continue
        if e.code() not in _NOT_READY_CODES:
          raise
        last_problem = f"{e.code().name}: {e.details()}"
      time.sleep(
          min(_READY_POLL_SECONDS, max(0.0, deadline - time.monotonic())))

  def _get_model_status(self, model_name: str, timeout: float,
                        wait_for_ready: bool = False):
    request = apis.GetModelStatusRequest()
    request.model_spec.name = model_name
    return self._models.GetModelStatus(
        request, timeout=timeout,
        wait_for_ready=wait_for_ready).model_version_status


def predict_request(model_name: str, inputs: Mapping[str, Any],
                    signature_name: str = "",
                    version: Optional[int] = None) -> apis.PredictRequest:
  """A PredictRequest; `inputs` maps aliases to arrays, lists or scalars."""
  request = apis.PredictRequest()
  request.model_spec.name = model_name
  request.model_spec.signature_name = signature_name
  if version is not None:
    request.model_spec.version.value = version
  for alias, value in inputs.items():
    _fill_input(value, request.inputs[alias])
  return request


def _fill_input(value: Any, proto: tensors.TensorProto) -> None:
  """Arrays keep their dtype (strings as DT_STRING); lists of strings are
  strings; other values follow tf.make_tensor_proto's rules."""
  if isinstance(value, (np.ndarray, np.generic)):
    tensors.fill_proto(value, proto, tensors.DT_STRING if value.dtype.kind in (
        "O", "S", "U") else None)
    return
  if (isinstance(value, (list, tuple)) and value and
      all(isinstance(v, (str, bytes)) for v in value)):
    array = np.empty(len(value), dtype=object)
    array[:] = list(value)
    tensors.fill_proto(array, proto, tensors.DT_STRING)
    return
  proto.CopyFrom(tf.make_tensor_proto(value))


def _to_python(value: Any) -> Any:
  if isinstance(value, bytes):
    return value.decode("utf-8", errors="replace")
  if isinstance(value, np.generic):
    return value.item()
  return value


def fusion_weights(client: PredictionClient, model_name: str
                   ) -> dict[str, float]:
  """The model's fused tasks and weights (its `fusion` signature), in the
  order `recommend_weighted` takes them."""
  out = client.predict(model_name, {_USER_ID: np.array([""], dtype=object)},
                       signature_name=FUSION_SIGNATURE)
  return {_to_python(t): float(w)
          for t, w in zip(out["tasks"][0], out["weights"][0])}


def recommend(client: PredictionClient, model_name: str,
              user_id: str, weights: Optional[Mapping[str, float]] = None,
              k: int = 10) -> list[dict[str, Any]]:
  """Top items for one user from the model's `recommend` signature.

  Args:
    client: connection to the server.
    model_name: the server's model name.
    user_id: the user, as in the training data.
    weights: fusion weights to use instead of the model's, by task (those
      not named keep the model's): `recommend_weighted` then answers, with
      k items.
    k: how many items, with `weights`.

  Returns:
    One dict per returned item, best first: rank (1-based), item_id, title,
    score, and one entry per other [1, k] output (the ranking tasks' per-item
    predictions, e.g. rating or p_like), keyed by output name.

  Raises:
    grpc.RpcError: the server failed the request.
    ValueError: the signature's outputs are not shaped like recommendations.
  """
  if weights:
    model_weights = fusion_weights(client, model_name)
    unknown = sorted(set(weights) - set(model_weights))
    if unknown:
      raise ValueError(f"{model_name!r} fuses {list(model_weights)}; no task "
                       f"named {unknown[0]!r}")
    model_weights.update(weights)
    outputs = client.predict(model_name, {
        _USER_ID: np.array([user_id], dtype=object),
        "exclude_item_ids": np.array([[""]], dtype=object),
        "k": np.array(k, np.int32),
        "fusion_weights": np.array([list(model_weights.values())],
                                   np.float32)},
                             signature_name=WEIGHTED_SIGNATURE)
  else:
    outputs = client.predict(
        model_name, {_USER_ID: np.array([user_id], dtype=object)},
        signature_name=RECOMMEND_SIGNATURE)
  missing = [name for name in (_ITEM_IDS, _TITLES, _SCORES)
             if name not in outputs]
  if missing:
    raise ValueError(
        f"The {RECOMMEND_SIGNATURE!r} signature of {model_name!r} lacks"
        f" outputs {missing}; it returned {sorted(outputs)}")
  shape = outputs[_ITEM_IDS].shape
  if len(shape) != 2 or shape[0] != 1:
    raise ValueError(f"{_ITEM_IDS!r} has shape {list(shape)}, expected [1, k]")
  for name in (_TITLES, _SCORES):
    if outputs[name].shape != shape:
      raise ValueError(f"{name!r} has shape {list(outputs[name].shape)},"
                       f" expected {list(shape)} like {_ITEM_IDS!r}")
  tasks = sorted(name for name, value in outputs.items()
                 if name not in (_ITEM_IDS, _TITLES, _SCORES) and
                 value.shape == shape)
  rows = []
  for i in range(shape[1]):
    row = {
        "rank": i + 1,
        "item_id": _to_python(outputs[_ITEM_IDS][0, i]),
        "title": _to_python(outputs[_TITLES][0, i]),
        "score": float(outputs[_SCORES][0, i]),
    }
    for name in tasks:
      row[name] = _to_python(outputs[name][0, i])
    rows.append(row)
  return rows


def score(client: PredictionClient, model_name: str, user_id: str,
          item_ids: Sequence[str],
          signature_name: str = apis.DEFAULT_SERVING_SIGNATURE
         ) -> list[dict[str, Any]]:
  """The ranking heads' predictions for one user and the given items.

  Args:
    client: connection to the server.
    model_name: the server's model name.
    user_id: the user.
    item_ids: the items to score, in the order the rows come back.
    signature_name: a signature taking `user_id` and `item_id` ([N] each).

  Returns:
    One dict per item: item_id and one entry per [N] output (rating, p_like,
    affinity for mtrec's serving_default), keyed by output name.

  Raises:
    grpc.RpcError: the server failed the request.
  """
  if not item_ids:
    return []
  users = np.array([user_id] * len(item_ids), dtype=object)
  items = np.array(list(item_ids), dtype=object)
  outputs = client.predict(model_name, {_USER_ID: users, "item_id": items},
                           signature_name=signature_name)
  columns = sorted(name for name, value in outputs.items()
                   if value.shape[:1] == (len(item_ids),) and value.ndim == 1)
  return [dict({"item_id": item_id},
               **{name: _to_python(outputs[name][i]) for name in columns})
          for i, item_id in enumerate(item_ids)]


def explain(client: PredictionClient, model_name: str, user_id: str,
            item_id: str) -> dict[str, Any]:
  """Why the model ranks an item where it does for a user: the `explain`
  signature's outputs for one (user, item) pair (trainer/explain.py).

  Returns:
    Output name -> value: a number or flag for the pair's scalar outputs
    (score, contribution_<task>, rank, item_known, ...), a list for the
    [1, n] ones (history_item_ids, interest_categories, gate_<task>, ...);
    strings decoded, "" padding dropped with its paired number.

  Raises:
    grpc.RpcError: the server failed the request (a model without the
      signature answers INVALID_ARGUMENT naming it).
  """
  outputs = client.predict(
      model_name, {_USER_ID: np.array([user_id], dtype=object),
                   "item_id": np.array([item_id], dtype=object)},
      signature_name="explain")
  out = {}
  for name, value in sorted(outputs.items()):
    row = value[0]
    out[name] = ([_to_python(v) for v in row] if np.ndim(row) else
                 _to_python(row))
  # The lists' padding ("" and its 0) says nothing.
  for names, numbers in (("history_item_ids", "history_similarities"),
                         ("interest_categories", "interest_shares")):
    if names in out:
      keep = [i for i, v in enumerate(out[names]) if v]
      out[names] = [out[names][i] for i in keep]
      out[numbers] = [out[numbers][i] for i in keep]
  return out

