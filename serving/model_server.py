"""A local stand-in for tensorflow_model_server that speaks its gRPC API.

Production serves mtrec's SavedModels with the real TensorFlow Serving binary.
Developers, tests and CI need the same thing without a C++ binary or Docker,
so this module implements the parts of TF Serving that mtrec relies on, on top
of the official `tensorflow_serving.apis` messages and servicers:

* Version discovery as TF Serving's file-system source does it: every
  integer-named directory under `model_base_path` that holds a SavedModel is a
  version; anything else (".tmp-3", "3.partial", a version still missing its
  saved_model.pb) is ignored, so a trainer can publish by writing elsewhere
  and renaming into place.
* The default "latest" version policy with availability-preserving swaps: a
  new version is loaded completely, then swapped in atomically, then the old
  one is released. Requests in flight keep the servable they started with, so
  no request fails during a swap.
* PredictionService.Predict / GetModelMetadata and ModelService.GetModelStatus
  with TF Serving's status codes and messages, so a client (and its error
  handling) moves between this server and production unchanged.

Deliberate gaps: one model per server (no --model_config_file, so no version
labels and no HandleReloadConfigRequest), no Classify/Regress/MultiInference,
no REST API, no batching and no warmup replay.

Run it like TF Serving:

  python -m serving.model_server --port=8500 --model_name=mtrec \
      --model_base_path=/abs/path/to/serving_models/mtrec
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import functools
import logging
import os
import re
import signal
import sys
import threading
from typing import Any, Callable, Mapping, Optional, Sequence

from google.protobuf import text_format
import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow.core.protobuf import saved_model_pb2

from serving import apis

# A fixed name: under `python -m` __name__ would be "__main__".
_LOG = logging.getLogger("serving.model_server")

_VERSION_DIR_NAME = re.compile(r"[0-9]+")
_SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
_SERVE_TAG = "serve"  # TF Serving's default --saved_model_tags.
# TF Serving's --max_num_load_retries default: a version whose load keeps
# failing (e.g. still being written in place) is retried this many times.
_MAX_LOAD_RETRIES = 5
# TF Serving lifts gRPC's 4 MiB message limit; so do we.
_GRPC_OPTIONS = (
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
)

_State = apis.ModelVersionStatus.State
# TensorFlow's error codes and gRPC's status codes share their numbering.
_GRPC_CODE_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


class _RpcError(Exception):
  """A request failure carrying the gRPC status TF Serving would return."""

  def __init__(self, code: grpc.StatusCode, message: str):
    super().__init__(message)
    self.code = code
    self.message = message


@dataclasses.dataclass(frozen=True)
class _Servable:
  """One loaded model version."""

  version: int
  path: str
  # The object tf.saved_model.load returned: it owns the variables, so it must
  # stay referenced for as long as its signature functions are called.
  model: Any
  signature_defs: Mapping[str, meta_graph_pb2.SignatureDef]

  def signature(
      self, name: str
  ) -> Optional[tuple[Callable[..., Any], meta_graph_pb2.SignatureDef]]:
    signature_def = self.signature_defs.get(name)
    if signature_def is None or name not in self.model.signatures:
      return None
    return self.model.signatures[name], signature_def


@dataclasses.dataclass(frozen=True)
class _VersionState:
  state: int  # a ModelVersionStatus.State value
  code: grpc.StatusCode = grpc.StatusCode.OK
  message: str = ""


def _list_versions(base_path: str) -> Optional[dict[int, str]]:
  """Maps version -> directory for complete versions; None if unlistable."""
  try:
    names = tf.io.gfile.listdir(base_path)
  except tf.errors.OpError:
    return None
  versions = {}
  for name in sorted(names):
    name = name.rstrip("/")  # Object stores list directories as "3/".
    if not _VERSION_DIR_NAME.fullmatch(name):
      continue
    path = os.path.join(base_path, name)
    # saved_model.pb is written last by tf.saved_model.save; until it exists
    # the directory is a version being written, not a version.
    if any(tf.io.gfile.exists(os.path.join(path, f))
           for f in _SAVED_MODEL_FILES):
      versions.setdefault(int(name), path)
  return versions


def _read_serving_signature_defs(
    path: str) -> dict[str, meta_graph_pb2.SignatureDef]:
  """The SignatureDefs of the "serve" MetaGraph, as TF Serving sees them."""
  saved_model = saved_model_pb2.SavedModel()
  binary_path = os.path.join(path, "saved_model.pb")
  if tf.io.gfile.exists(binary_path):
    with tf.io.gfile.GFile(binary_path, "rb") as f:
      saved_model.ParseFromString(f.read())
  else:
    with tf.io.gfile.GFile(os.path.join(path, "saved_model.pbtxt"), "r") as f:
      text_format.Parse(f.read(), saved_model)
  for meta_graph in saved_model.meta_graphs:
    if _SERVE_TAG in meta_graph.meta_info_def.tags:
      return dict(meta_graph.signature_def)
  raise ValueError(f"{path} has no MetaGraph tagged {_SERVE_TAG!r}")


def _load_servable(version: int, path: str) -> _Servable:
  signature_defs = _read_serving_signature_defs(path)
  model = tf.saved_model.load(path, tags=[_SERVE_TAG])
  return _Servable(version, path, model, signature_defs)


def _dtype_name(dtype_enum: int) -> str:
  try:
    return tf.as_dtype(dtype_enum).name
  except TypeError:
    return f"DataType({dtype_enum})"


def _parse_inputs(
    signature_def: meta_graph_pb2.SignatureDef,
    request_inputs: Mapping[str, Any]) -> dict[str, tf.Tensor]:
  """Validates request tensors against the signature, as TF Serving does."""
  expected = set(signature_def.inputs)
  sent = set(request_inputs)
  if len(sent) != len(expected):
    raise _RpcError(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"input size does not match signature: {len(sent)}!={len(expected)}"
        f" len({{{','.join(sorted(sent))}}}) !="
        f" len({{{','.join(sorted(expected))}}})."
        f" Sent extra: {{{','.join(sorted(sent - expected))}}}."
        f" Missing but required: {{{','.join(sorted(expected - sent))}}}.")
  tensors = {}
  for alias in sorted(sent):
    if alias not in expected:
      raise _RpcError(
          grpc.StatusCode.INVALID_ARGUMENT,
          f"input tensor alias not found in signature: {alias}. Inputs"
          f" expected to be in the set {{{','.join(sorted(expected))}}}.")
    proto = request_inputs[alias]
    info = signature_def.inputs[alias]
    # TF Serving leaves dtype and shape to Session::Run, whose errors name
    # graph nodes ("Expects arg[1] to be string but float is provided");
    # checking here names the input instead, with the same status code.
    if proto.dtype != info.dtype:
      raise _RpcError(
          grpc.StatusCode.INVALID_ARGUMENT,
          f'Expects input "{alias}" to be {_dtype_name(info.dtype)} but'
          f" {_dtype_name(proto.dtype)} is provided")
    try:
      array = tf.make_ndarray(proto)
    except (TypeError, ValueError):
      raise _RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                      f"tensor parsing error: {alias}") from None
    expected_shape = tf.TensorShape(info.tensor_shape)
    if not expected_shape.is_compatible_with(array.shape):
      raise _RpcError(
          grpc.StatusCode.INVALID_ARGUMENT,
          f'input "{alias}" has shape {list(array.shape)}, which is not'
          f" compatible with the signature's shape {expected_shape}")
    tensors[alias] = tf.convert_to_tensor(array, dtype=info.dtype)
  return tensors


def _output_names(signature_def: meta_graph_pb2.SignatureDef,
                  output_filter: Sequence[str]) -> list[str]:
  """The outputs to return: output_filter, validated, or all of them."""
  if not output_filter:
    return sorted(signature_def.outputs)
  names = []
  for alias in output_filter:
    if alias not in signature_def.outputs:
      raise _RpcError(
          grpc.StatusCode.INVALID_ARGUMENT,
          f"output tensor alias not found in signature: {alias} Outputs"
          " expected to be in the set"
          f" {{{','.join(sorted(signature_def.outputs))}}}.")
    if alias in names:
      raise _RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                      f"duplicate output tensor alias: {alias}")
    names.append(alias)
  return names


def _require_model_spec(request: Any) -> apis.ModelSpec:
  if not request.HasField("model_spec"):
    raise _RpcError(grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")
  return request.model_spec


class ModelServer:
  """Serves the latest version under a base path over TF Serving's gRPC API.

  Usage:

    server = ModelServer("mtrec", "/models/mtrec", port=8500).start()
    ...
    server.stop()

  or as a context manager. `start()` loads the latest version present (as TF
  Serving loads its initial models) before it opens the port, then a
  background thread polls `model_base_path` every `poll_wait_seconds` for new
  versions: 0 polls only at start, a negative value never polls (TF Serving's
  --file_system_poll_wait_seconds semantics).
  """

  def __init__(self,
               model_name: str,
               model_base_path: str,
               port: int = 8500,
               poll_wait_seconds: float = 1.0,
               max_workers: Optional[int] = None,
               host: str = "0.0.0.0"):
    """Initializes the server; nothing is loaded or bound until start().

    Args:
      model_name: the name requests must put in model_spec.name.
      model_base_path: directory (or gs:// etc. URL) holding version
        directories "1", "2", ...
      port: TCP port for gRPC; 0 picks a free one (see `port` after start()).
      poll_wait_seconds: seconds between file-system polls.
      max_workers: gRPC worker threads, i.e. concurrent requests; None uses
        ThreadPoolExecutor's default.
      host: interface to bind; TF Serving binds all of them.
    """
    self._model_name = model_name
    self._base_path = model_base_path
    self._requested_port = port
    self._poll_wait_seconds = poll_wait_seconds
    self._max_workers = max_workers
    self._host = host
    self._lock = threading.Lock()
    self._servable: Optional[_Servable] = None
    self._states: dict[int, _VersionState] = {}
    self._load_failures: dict[int, int] = {}
    self._poll_lock = threading.Lock()  # One poll (and load) at a time.
    self._poll_problem: Optional[str] = None  # Logged once, not every poll.
    self._stop_polling = threading.Event()
    self._poll_thread: Optional[threading.Thread] = None
    self._server: Optional[grpc.Server] = None
    self._port: Optional[int] = None

  @property
  def model_name(self) -> str:
    return self._model_name

  @property
  def port(self) -> int:
    """The bound port; differs from the constructor's only when that was 0."""
    if self._port is None:
      raise RuntimeError("ModelServer is not started")
    return self._port

  @property
  def version(self) -> Optional[int]:
    """The version being served, or None while none is loaded."""
    with self._lock:
      return self._servable.version if self._servable else None

  def start(self) -> ModelServer:
    """Loads the latest version, opens the port and starts polling."""
    if self._server is not None:
      raise RuntimeError("ModelServer is already started")
    if self._poll_wait_seconds >= 0:
      self.poll()
    server = grpc.server(
        concurrent.futures.ThreadPoolExecutor(
            max_workers=self._max_workers, thread_name_prefix="model_server"),
        options=_GRPC_OPTIONS)
    apis.add_PredictionServiceServicer_to_server(
        _PredictionServicer(self), server)
    apis.add_ModelServiceServicer_to_server(_ModelServicer(self), server)
    address = f"{self._host}:{self._requested_port}"
    port = server.add_insecure_port(address)
    if not port:  # Older grpcio returns 0 instead of raising.
      raise RuntimeError(f"Failed to bind gRPC server to {address}")
    server.start()
    self._server, self._port = server, port
    if self._poll_wait_seconds > 0:
      self._poll_thread = threading.Thread(
          target=self._poll_loop, name=f"poll-{self._model_name}", daemon=True)
      self._poll_thread.start()
    return self

  def stop(self, grace: Optional[float] = None) -> None:
    """Stops polling and serving; `grace` seconds let in-flight RPCs finish."""
    self._stop_polling.set()
    if self._server is not None:
      self._server.stop(grace).wait()
    if self._poll_thread is not None:
      self._poll_thread.join()
    with self._lock:
      if self._servable is not None:
        self._states[self._servable.version] = _VersionState(_State.END)
        self._servable = None

  def wait(self, timeout: Optional[float] = None) -> bool:
    """Blocks until the server stops; False if `timeout` ran out first."""
    if self._server is None:
      raise RuntimeError("ModelServer is not started")
    return not self._server.wait_for_termination(timeout)

  def __enter__(self) -> ModelServer:
    return self.start()

  def __exit__(self, *exc_info) -> None:
    self.stop()

  def poll(self) -> None:
    """Makes the latest complete version on disk the served one, once.

    The background thread calls this; it is public so that tests and tools can
    force a poll when polling is disabled.
    """
    with self._poll_lock:
      self._poll()

  def _poll(self) -> None:
    versions = _list_versions(self._base_path)
    if versions is None:
      self._report_problem(f"Could not find base path {self._base_path} for"
                           f" servable {self._model_name}")
      return
    if not versions:
      # As in TF Serving, an empty base path unloads the model.
      self._report_problem(
          f"No versions of servable {self._model_name} found under base path"
          f" {self._base_path}. Did you forget to name your leaf directory as"
          " a number (eg. '/1/')?")
      self._unload()
      return
    self._poll_problem = None
    latest = max(versions)
    with self._lock:
      current = self._servable
    if current is not None and current.version == latest:
      return
    if self._load_failures.get(latest, 0) > _MAX_LOAD_RETRIES:
      return
    self._set_state(latest, _VersionState(_State.LOADING))
    _LOG.info("Loading servable version {name: %s version: %d} from %s",
              self._model_name, latest, versions[latest])
    try:
      servable = _load_servable(latest, versions[latest])
    except Exception as e:  # pylint: disable=broad-except
      failures = self._load_failures[latest] = (
          self._load_failures.get(latest, 0) + 1)
      code = (_GRPC_CODE_BY_NUMBER.get(e.error_code, grpc.StatusCode.UNKNOWN)
              if isinstance(e, tf.errors.OpError) else grpc.StatusCode.UNKNOWN)
      gave_up = failures > _MAX_LOAD_RETRIES
      self._set_state(
          latest,
          _VersionState(_State.END, code, str(e)) if gave_up else
          _VersionState(_State.LOADING))
      _LOG.error("Loading servable: {name: %s version: %d} failed%s: %s",
                 self._model_name, latest,
                 "; giving up" if gave_up else ", will retry", e)
      return
    with self._lock:
      previous, self._servable = self._servable, servable
      self._states[latest] = _VersionState(_State.AVAILABLE)
      if previous is not None:
        self._states[previous.version] = _VersionState(_State.END)
    _LOG.info("Successfully loaded servable version {name: %s version: %d}",
              self._model_name, latest)
    if previous is not None:
      _LOG.info("Unloaded servable version {name: %s version: %d}",
                self._model_name, previous.version)

  def _report_problem(self, problem: str) -> None:
    if problem != self._poll_problem:
      _LOG.warning("%s", problem)
      self._poll_problem = problem

  def _poll_loop(self) -> None:
    while not self._stop_polling.wait(self._poll_wait_seconds):
      try:
        self.poll()
      except Exception:  # pylint: disable=broad-except
        _LOG.exception("Polling %s failed", self._base_path)

  def _unload(self) -> None:
    with self._lock:
      previous, self._servable = self._servable, None
      if previous is not None:
        self._states[previous.version] = _VersionState(_State.END)
    if previous is not None:
      _LOG.info("Unloaded servable version {name: %s version: %d}",
                self._model_name, previous.version)

  def _set_state(self, version: int, state: _VersionState) -> None:
    with self._lock:
      self._states[version] = state

  def _resolve(self, model_spec: apis.ModelSpec) -> _Servable:
    """The servable a ModelSpec asks for, or TF Serving's lookup error."""
    choice = model_spec.WhichOneof("version_choice")
    if choice == "version_label":
      # Labels come from a model config file, which this server has none of.
      raise _RpcError(
          grpc.StatusCode.INVALID_ARGUMENT,
          f"Unrecognized servable version label: {model_spec.version_label}")
    version = model_spec.version.value if choice == "version" else None
    with self._lock:
      servable = self._servable
    if (model_spec.name != self._model_name or servable is None or
        (version is not None and version != servable.version)):
      request = (f"Specific({model_spec.name}, {version})"
                 if version is not None else f"Latest({model_spec.name})")
      raise _RpcError(grpc.StatusCode.NOT_FOUND,
                      f"Servable not found for request: {request}")
    return servable

  def predict(self, request: apis.PredictRequest) -> apis.PredictResponse:
    """Runs one Predict request; raises _RpcError as TF Serving would fail."""
    servable = self._resolve(_require_model_spec(request))
    signature_name = (request.model_spec.signature_name or
                      apis.DEFAULT_SERVING_SIGNATURE)
    signature = servable.signature(signature_name)
    if signature is None:
      raise _RpcError(
          grpc.StatusCode.FAILED_PRECONDITION,
          f'Serving signature name: "{signature_name}" not found in signature'
          " def")
    function, signature_def = signature
    inputs = _parse_inputs(signature_def, request.inputs)
    output_names = _output_names(signature_def, request.output_filter)
    try:
      outputs = function(**inputs)
    except tf.errors.OpError as e:
      # Session::Run's status goes back unchanged; for op failures (failed
      # assertions, bad indices, reshape errors) that is INVALID_ARGUMENT.
      raise _RpcError(
          _GRPC_CODE_BY_NUMBER.get(e.error_code, grpc.StatusCode.UNKNOWN),
          e.message) from None
    except (TypeError, ValueError) as e:
      raise _RpcError(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from None
    response = apis.PredictResponse()
    response.model_spec.name = self._model_name
    response.model_spec.version.value = servable.version
    response.model_spec.signature_name = signature_name
    for name in output_names:
      response.outputs[name].CopyFrom(
          tf.make_tensor_proto(np.asarray(outputs[name])))
    return response

  def get_model_metadata(
      self,
      request: apis.GetModelMetadataRequest) -> apis.GetModelMetadataResponse:
    model_spec = _require_model_spec(request)
    if not request.metadata_field:
      raise _RpcError(
          grpc.StatusCode.INVALID_ARGUMENT,
          "GetModelMetadataRequest must specify at least one metadata_field")
    for field in request.metadata_field:
      if field != apis.SIGNATURE_DEF_FIELD:
        raise _RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                        f"Metadata field {field} is not supported")
    servable = self._resolve(model_spec)
    signature_def_map = apis.SignatureDefMap()
    for name, signature_def in servable.signature_defs.items():
      signature_def_map.signature_def[name].CopyFrom(signature_def)
    response = apis.GetModelMetadataResponse()
    response.model_spec.name = self._model_name
    response.model_spec.version.value = servable.version
    response.metadata[apis.SIGNATURE_DEF_FIELD].Pack(signature_def_map)
    return response

  def get_model_status(
      self, request: apis.GetModelStatusRequest) -> apis.GetModelStatusResponse:
    model_spec = _require_model_spec(request)
    with self._lock:
      states = (dict(self._states)
                if model_spec.name == self._model_name else {})
    if model_spec.HasField("version"):
      version = model_spec.version.value
      if version not in states:
        raise _RpcError(
            grpc.StatusCode.NOT_FOUND,
            f"Could not find version {version} of model {model_spec.name}")
      versions = [version]
    else:
      if not states:
        raise _RpcError(
            grpc.StatusCode.NOT_FOUND,
            f"Could not find any versions of model {model_spec.name}")
      versions = sorted(states, reverse=True)  # TF Serving lists newest first.
    response = apis.GetModelStatusResponse()
    for version in versions:
      status = response.model_version_status.add()
      status.version = version
      status.state = states[version].state
      status.status.error_code = states[version].code.value[0]
      status.status.error_message = states[version].message
    return response


def _rpc(method: Callable[[Any, Any], Any]) -> Callable[..., Any]:
  """Turns _RpcError into the call's gRPC status; anything else is INTERNAL."""

  @functools.wraps(method)
  def wrapper(self, request, context):
    try:
      return method(self, request)
    except _RpcError as e:
      context.abort(e.code, e.message)
    except Exception as e:  # pylint: disable=broad-except
      _LOG.exception("%s failed", method.__name__)
      context.abort(grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}")

  return wrapper


class _PredictionServicer(apis.PredictionServiceServicer):
  """tensorflow.serving.PredictionService backed by a ModelServer."""

  def __init__(self, server: ModelServer):
    self._server = server

  @_rpc
  def Predict(self, request):  # pylint: disable=invalid-name
    return self._server.predict(request)

  @_rpc
  def GetModelMetadata(self, request):  # pylint: disable=invalid-name
    return self._server.get_model_metadata(request)

  def Classify(self, request, context):  # pylint: disable=invalid-name
    del request  # Unused.
    context.abort(grpc.StatusCode.UNIMPLEMENTED,
                  "Classify is not supported by this server; use Predict")

  def Regress(self, request, context):  # pylint: disable=invalid-name
    del request  # Unused.
    context.abort(grpc.StatusCode.UNIMPLEMENTED,
                  "Regress is not supported by this server; use Predict")

  def MultiInference(self, request, context):  # pylint: disable=invalid-name
    del request  # Unused.
    context.abort(grpc.StatusCode.UNIMPLEMENTED,
                  "MultiInference is not supported by this server; use"
                  " Predict")


class _ModelServicer(apis.ModelServiceServicer):
  """tensorflow.serving.ModelService backed by a ModelServer."""

  def __init__(self, server: ModelServer):
    self._server = server

  @_rpc
  def GetModelStatus(self, request):  # pylint: disable=invalid-name
    return self._server.get_model_status(request)

  # pylint: disable-next=invalid-name
  def HandleReloadConfigRequest(self, request, context):
    del request  # Unused.
    context.abort(
        grpc.StatusCode.UNIMPLEMENTED,
        "This server serves one model from --model_base_path and has no"
        " model config to reload")


def serve_main(argv: Optional[list[str]] = None) -> int:
  """`mtrec serve`: serves a model until Ctrl-C or SIGTERM.

  Takes tensorflow_model_server's flag names, so launch scripts and manifests
  switch between this server and the real binary by changing the command.

  Args:
    argv: arguments without the program name; None reads sys.argv.

  Returns:
    The process exit status.
  """
  parser = argparse.ArgumentParser(
      prog="mtrec serve",
      description="Serve a SavedModel over TensorFlow Serving's gRPC API.")
  parser.add_argument("--port", type=int, default=8500,
                      help="Port to listen on for gRPC API.")
  parser.add_argument("--model_name", default="mtrec",
                      help="Name of the model; requests must use it.")
  parser.add_argument("--model_base_path", required=True,
                      help="Directory holding the numbered model versions.")
  parser.add_argument(
      "--file_system_poll_wait_seconds", type=float, default=1,
      help="Seconds between polls for new versions; 0 polls once at start,"
      " a negative value never.")
  args = parser.parse_args(argv)
  logging.basicConfig(
      level=logging.INFO,
      format="%(asctime)s %(levelname).1s %(name)s] %(message)s")

  stop_requested = threading.Event()

  def _request_stop(signum, frame):
    del frame  # Unused.
    _LOG.info("Received %s; shutting down", signal.Signals(signum).name)
    stop_requested.set()

  handled = (signal.SIGINT, signal.SIGTERM)
  previous_handlers = {}
  if threading.current_thread() is threading.main_thread():
    previous_handlers = {s: signal.signal(s, _request_stop) for s in handled}
  server = ModelServer(
      args.model_name,
      args.model_base_path,
      port=args.port,
      poll_wait_seconds=args.file_system_poll_wait_seconds)
  try:
    try:
      server.start()
    except RuntimeError as e:
      _LOG.error("Failed to start server: %s", e)
      return 1
    _LOG.info("Running gRPC ModelServer at 0.0.0.0:%d ...", server.port)
    version = server.version
    if version is None:
      _LOG.warning("Serving no version of %s yet; waiting for one under %s",
                   args.model_name, args.model_base_path)
    else:
      _LOG.info("Serving model %s version %d", args.model_name, version)
    # A timed wait keeps the main thread responsive to signals everywhere.
    while not stop_requested.wait(0.5):
      pass
  finally:
    server.stop(grace=5.0)
    for sig, handler in previous_handlers.items():
      signal.signal(sig, handler)
  _LOG.info("Server stopped")
  return 0


if __name__ == "__main__":
  sys.exit(serve_main())
