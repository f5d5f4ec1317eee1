"""Client side of serving: the library and the `mtrec` client commands.

The client is written against the official TF Serving stubs only, so it works
unchanged against tensorflow_model_server in production and against
`serving.model_server` locally. Errors are not translated: callers see the
server's `grpc.RpcError` (NOT_FOUND for an unknown model, INVALID_ARGUMENT for
a bad input, ...) exactly as TF Serving reports it.

Commands (each a `*_main(argv) -> exit status`): `recommend` (top items for a
user), `score` (the ranking heads for a user and given items), `metadata`
(the served version's signatures) and `status` (every version's state).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from typing import Any, Mapping, Optional, Sequence

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2

from serving import apis
from serving import status as status_lib
from serving import tensors

RECOMMEND_SIGNATURE = "recommend"
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


def recommend(client: PredictionClient, model_name: str,
              user_id: str) -> list[dict[str, Any]]:
  """Top items for one user from the model's `recommend` signature.

  Args:
    client: connection to the server.
    model_name: the server's model name.
    user_id: the user, as in the training data.

  Returns:
    One dict per returned item, best first: rank (1-based), item_id, title,
    score, and one entry per other [1, k] output (the ranking tasks' per-item
    predictions, e.g. rating or p_like), keyed by output name.

  Raises:
    grpc.RpcError: the server failed the request.
    ValueError: the signature's outputs are not shaped like recommendations.
  """
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


def format_table(rows: list[dict[str, Any]], max_title_chars: int = 48) -> str:
  """Renders recommend() rows as an aligned text table."""
  if not rows:
    return "(no recommendations)"
  columns = list(rows[0])

  def cell(column: str, value: Any) -> str:
    if isinstance(value, float):
      return f"{value:.4f}"
    text = str(value)
    if column == "title" and len(text) > max_title_chars:
      text = text[:max_title_chars - 3] + "..."
    return text

  cells = [[cell(c, row.get(c, "")) for c in columns] for row in rows]
  widths = [max(len(c), *(len(r[j]) for r in cells))
            for j, c in enumerate(columns)]
  # Numbers right-aligned, text left-aligned.
  right = [isinstance(rows[0].get(c), (int, float)) for c in columns]

  def line(values: list[str]) -> str:
    return "  ".join(v.rjust(w) if r else v.ljust(w)
                     for v, w, r in zip(values, widths, right)).rstrip()

  return "\n".join([line(columns), line(["-" * w for w in widths])] +
                   [line(r) for r in cells])


def recommend_main(argv: Optional[list[str]] = None) -> int:
  """`mtrec recommend --user U`: prints a user's recommendations.

  Args:
    argv: arguments without the program name; None reads sys.argv.

  Returns:
    The process exit status: 0, or 1 when the server failed the request.
  """
  parser = argparse.ArgumentParser(
      prog="mtrec recommend",
      description="Ask a running model server for a user's top items.")
  parser.add_argument("--user", required=True, help="The user id.")
  parser.add_argument("--server", default="localhost:8500",
                      help="host:port of the gRPC model server.")
  parser.add_argument("--model_name", default="mtrec",
                      help="The model name the server serves.")
  parser.add_argument("--timeout", type=float, default=10.0,
                      help="Seconds to wait for the answer.")
  args = parser.parse_args(argv)
  with PredictionClient(args.server, timeout=args.timeout) as client:
    try:
      rows = recommend(client, args.model_name, args.user)
    except grpc.RpcError as e:
      print(f"mtrec recommend: {args.server} failed the request:"
            f" {e.code().name}: {e.details()}", file=sys.stderr)
      return 1
    except ValueError as e:
      print(f"mtrec recommend: {e}", file=sys.stderr)
      return 1
  print(f"Recommendations for user {args.user} ({args.model_name} at"
        f" {args.server}):")
  print(format_table(rows))
  return 0


def _client_parser(prog: str, description: str) -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog=prog, description=description)
  parser.add_argument("--server", default="localhost:8500",
                      help="host:port of the gRPC model server.")
  parser.add_argument("--model_name", default="mtrec",
                      help="The model name the server serves.")
  parser.add_argument("--timeout", type=float, default=10.0,
                      help="Seconds to wait for the answer.")
  return parser


def _report_rpc_error(command: str, server: str, error: grpc.RpcError) -> int:
  print(f"mtrec {command}: {server} failed the request:"
        f" {error.code().name}: {error.details()}", file=sys.stderr)
  return 1


def score_main(argv: Optional[list[str]] = None) -> int:
  """`mtrec score --user U --items I1,I2,...`: prints the heads per item.

  Args:
    argv: arguments without the program name; None reads sys.argv.

  Returns:
    The process exit status: 0, or 1 when the server failed the request.
  """
  parser = _client_parser("mtrec score",
                          "Score items for a user with a running server.")
  parser.add_argument("--user", required=True, help="The user id.")
  parser.add_argument("--items", required=True,
                      help="Comma-separated item ids to score.")
  parser.add_argument("--signature_name",
                      default=apis.DEFAULT_SERVING_SIGNATURE,
                      help="A signature taking user_id and item_id.")
  args = parser.parse_args(argv)
  items = [i.strip() for i in args.items.split(",") if i.strip()]
  if not items:
    parser.error("--items names no item")
  with PredictionClient(args.server, timeout=args.timeout) as client:
    try:
      rows = score(client, args.model_name, args.user, items,
                   args.signature_name)
    except grpc.RpcError as e:
      return _report_rpc_error("score", args.server, e)
  print(f"Scores for user {args.user} ({args.model_name} at {args.server}):")
  print(format_table(rows))
  return 0


def _tensor_info_text(info) -> str:
  dims = ("unknown rank" if info.tensor_shape.unknown_rank else
          "[" + ", ".join("?" if d.size < 0 else str(d.size)
                          for d in info.tensor_shape.dim) + "]")
  return f"{tensors.data_type_name(info.dtype)} {dims}"


def metadata_main(argv: Optional[list[str]] = None) -> int:
  """`mtrec metadata`: prints the served version and its signatures.

  Args:
    argv: arguments without the program name; None reads sys.argv.

  Returns:
    The process exit status: 0, or 1 when the server failed the request.
  """
  parser = _client_parser("mtrec metadata",
                          "Show a served model's version and signatures.")
  parser.add_argument("--version", type=int, default=None,
                      help="A specific loaded version (default: latest).")
  parser.add_argument("--json", action="store_true",
                      help="Print JSON instead of text.")
  args = parser.parse_args(argv)
  with PredictionClient(args.server, timeout=args.timeout) as client:
    try:
      metadata = client.metadata(args.model_name, args.version)
    except grpc.RpcError as e:
      return _report_rpc_error("metadata", args.server, e)
  if args.json:
    print(json.dumps({
        "name": metadata.name,
        "version": metadata.version,
        "signatures": {
            name: {
                "method_name": sig.method_name,
                "inputs": {k: _tensor_info_text(v)
                           for k, v in sorted(sig.inputs.items())},
                "outputs": {k: _tensor_info_text(v)
                            for k, v in sorted(sig.outputs.items())},
            } for name, sig in sorted(metadata.signature_defs.items())
        }
    }, indent=2))
    return 0
  print(f"model {metadata.name} version {metadata.version}")
  for name, sig in sorted(metadata.signature_defs.items()):
    print(f"signature {name} ({sig.method_name})")
    for alias, info in sorted(sig.inputs.items()):
      print(f"  input  {alias}: {_tensor_info_text(info)}")
    for alias, info in sorted(sig.outputs.items()):
      print(f"  output {alias}: {_tensor_info_text(info)}")
  return 0


def status_main(argv: Optional[list[str]] = None) -> int:
  """`mtrec status`: prints the state of every version the server knows.

  Args:
    argv: arguments without the program name; None reads sys.argv.

  Returns:
    The process exit status: 0 when a version is AVAILABLE, 3 when none is
    (a script can wait on it), 1 when the server failed the request.
  """
  parser = _client_parser("mtrec status",
                          "Show the state of every version of a model.")
  args = parser.parse_args(argv)
  with PredictionClient(args.server, timeout=args.timeout) as client:
    try:
      statuses = client._get_model_status(  # pylint: disable=protected-access
          args.model_name, args.timeout)
    except grpc.RpcError as e:
      return _report_rpc_error("status", args.server, e)
  rows = []
  for version_status in statuses:
    error = version_status.status
    rows.append({
        "version": version_status.version,
        "state": apis.ModelVersionStatus.State.Name(version_status.state),
        "error": (f"{status_lib.grpc_code(error.error_code).name}:"
                  f" {error.error_message}" if error.error_code else ""),
    })
  print(f"{args.model_name} at {args.server}:")
  print(format_table(rows, max_title_chars=200))
  available = any(r["state"] == "AVAILABLE" for r in rows)
  return 0 if available else 3


if __name__ == "__main__":
  sys.exit(recommend_main())
