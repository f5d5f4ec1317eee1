"""A stand-in for tensorflow_model_server: same APIs, flags and behaviour.

Production serves mtrec's SavedModels with the real TensorFlow Serving
binary (deploy/). Developers, tests and CI need the same thing without a C++
binary or Docker, and a client must not notice which one it talks to. This
module assembles the pieces into one server:

* gRPC (grpc.aio, on one event-loop thread): PredictionService (Predict,
  Classify, Regress, MultiInference, GetModelMetadata), ModelService
  (GetModelStatus, HandleReloadConfigRequest) with TF Serving's codes and
  messages, and the standard grpc.health.v1 service (health.py);
* REST on `--rest_api_port` (rest.py: aiohttp, on the same event loop);
* models from `--model_name`/`--model_base_path` or a `--model_config_file`
  with several models, version policies and labels, polled for new versions
  and (`--model_config_file_poll_wait_seconds`) config changes; new versions
  load, warm up and swap in without failing a request (manager.py);
* `--enable_batching` with TF Serving's BatchingParameters (batching.py);
  without it, model calls run on a bounded pool of `--grpc_max_threads`;
* TF Serving's message-size limit (2^31 - 1 bytes both ways, changed with
  `--grpc_channel_arguments`), and graceful shutdown: on SIGTERM the health
  service turns NOT_SERVING, new calls are refused, calls in flight get a
  grace period.

Deliberate differences, none visible to a well-behaved client: `--port=0`
picks a free port; a relative `--model_base_path` is resolved against the
working directory (TF Serving rejects it); a base path without versions is
not a startup error; `--bind_address` (an mtrec flag) chooses the interface.

Run it like TF Serving:

  python -m serving.model_server --port=8500 --rest_api_port=8501 \\
      --model_name=mtrec --model_base_path=/abs/path/to/serving_models/mtrec
"""

from __future__ import annotations

if __name__ == "__main__":
  # The program, not the library: TensorFlow's kernels are chosen when it
  # loads, so before any import below pulls it in (runtime.py says why).
  from serving import runtime as _runtime  # pylint: disable=g-import-not-at-top
  _runtime.use_server_kernels()

import asyncio
import concurrent.futures
import gc
import logging
import os
import signal
import sys
import threading
from typing import Any, Optional

import grpc

from serving import apis
from serving import batching
from serving import config as config_lib
from serving import grpc_services
from serving import health
from serving import inference
from serving import manager as manager_lib
from serving import rest
from serving import runtime
from serving import service as service_lib
from serving import status
# The options and flags live apart from TensorFlow, for a fast `--help`;
# importing them here keeps `model_server.build_arg_parser` and friends.
from serving.server_flags import _IGNORED_FLAGS  # noqa: F401
from serving.server_flags import ServerOptions
from serving.server_flags import build_arg_parser

# A fixed name: under `python -m` __name__ would be "__main__".
_LOG = logging.getLogger("serving.model_server")

_KINT32_MAX = 2**31 - 1  # builder.SetMaxMessageSize(tensorflow::kint32max).


def parse_channel_arguments(text: str) -> list[tuple[str, Any]]:
  """--grpc_channel_arguments: "k=v,k2=v2", integers passed as integers."""
  arguments = []
  for item in filter(None, (part.strip() for part in text.split(","))):
    key, sep, value = item.partition("=")
    if not sep:
      raise ValueError(f"gRPC channel argument {item!r} is not key=value")
    try:
      arguments.append((key, int(value)))
    except ValueError:
      arguments.append((key, value))
  return arguments


class ModelServer:
  """TensorFlow Serving's model server, in-process.

  Usage:

    with ModelServer("mtrec", "/models/mtrec", port=0, host="127.0.0.1",
                     rest_api_port=0) as server:
      ... server.port, server.rest_port ...

  `start()` loads the models present (as TF Serving loads its initial
  models) before it opens the ports; keyword options are ServerOptions
  fields.
  """

  def __init__(self,
               model_name: Optional[str] = None,
               model_base_path: Optional[str] = None,
               port: int = 8500,
               poll_wait_seconds: float = 1.0,
               max_workers: Optional[int] = None,
               host: str = "0.0.0.0",
               **options: Any):
    """Initializes the server; nothing loads or binds until start().

    Args:
      model_name: --model_name (ignored with a model config).
      model_base_path: --model_base_path.
      port: gRPC port; 0 picks a free one (see `port` after start()).
      poll_wait_seconds: --file_system_poll_wait_seconds.
      max_workers: --grpc_max_threads, the pool that runs unbatched calls.
      host: interface to bind; TF Serving binds all of them.
      **options: any other ServerOptions field.
    """
    if max_workers is not None:
      options["grpc_max_threads"] = max_workers
    self._options = ServerOptions(
        port=port, host=host, file_system_poll_wait_seconds=poll_wait_seconds,
        **options)
    if model_name is not None:
      self._options.model_name = model_name
    if model_base_path is not None:
      self._options.model_base_path = model_base_path
    self._manager: Optional[manager_lib.ModelManager] = None
    self._loop: Optional[asyncio.AbstractEventLoop] = None
    self._loop_thread: Optional[threading.Thread] = None
    self._server: Optional[grpc.aio.Server] = None
    self._rest: Optional[rest.RestServer] = None
    self._batcher: Optional[batching.Batcher] = None
    self._executor: Optional[concurrent.futures.ThreadPoolExecutor] = None
    self._health = health.HealthServicer()
    self._port: Optional[int] = None
    self._config_poller: Optional[threading.Thread] = None
    self._stopping = threading.Event()
    self._stopped = threading.Event()
    self._started = False

  @property
  def options(self) -> ServerOptions:
    return self._options

  @property
  def model_name(self) -> str:
    names = self._manager.model_names() if self._manager else []
    return names[0] if names else self._options.model_name

  @property
  def port(self) -> int:
    """The bound gRPC port; differs from the option only when that was 0."""
    if self._port is None:
      raise RuntimeError("ModelServer is not started")
    return self._port

  @property
  def rest_port(self) -> Optional[int]:
    """The bound REST port, or None without a REST API."""
    return self._rest.port if self._rest is not None else None

  @property
  def manager(self) -> manager_lib.ModelManager:
    if self._manager is None:
      raise RuntimeError("ModelServer is not started")
    return self._manager

  @property
  def version(self) -> Optional[int]:
    """The newest available version of the (first) model, or None."""
    if self._manager is None:
      return None
    versions = self._manager.available_versions(self.model_name)
    return versions[-1] if versions else None

  # Lifecycle.

  def start(self) -> ModelServer:
    """Loads the models, opens the ports and starts polling.

    Raises:
      RuntimeError: "Failed to start server. Error: ..." (TF Serving's
        words) for a bad flag combination, config, label or initial load.
    """
    if self._started:
      raise RuntimeError("ModelServer is already started")
    self._started = True
    try:
      self._start()
    except Exception as e:
      self._shutdown(grace=0)
      error = status.from_exception(e) if not isinstance(
          e, (ValueError, OSError)) else status.invalid_argument(str(e))
      raise RuntimeError(f"Failed to start server. Error: {error}") from e
    return self

  def _start(self) -> None:
    options = self._options
    config = self._initial_config()
    parameters = None
    if options.enable_batching:
      parameters = options.batching_parameters
      if parameters is None and options.batching_parameters_file:
        parameters = batching.read_batching_parameters(
            options.batching_parameters_file)
      parameters = parameters or batching.BatchingParameters()
    elif options.batching_parameters_file:
      raise status.invalid_argument(
          "server_options.batching_parameters_file is set without setting"
          " server_options.enable_batching to true.")
    channel_arguments = dict([
        ("grpc.max_send_message_length", _KINT32_MAX),
        ("grpc.max_receive_message_length", _KINT32_MAX),
    ])
    channel_arguments.update(
        parse_channel_arguments(options.grpc_channel_arguments))

    self._manager = manager_lib.ModelManager(manager_lib.ManagerOptions(
        file_system_poll_wait_seconds=options.file_system_poll_wait_seconds,
        max_num_load_retries=options.max_num_load_retries,
        load_retry_interval_micros=options.load_retry_interval_micros,
        allow_version_labels=options.allow_version_labels,
        allow_version_labels_for_unavailable_models=(
            options.allow_version_labels_for_unavailable_models),
        saved_model_tags=tuple(
            t for t in options.saved_model_tags.split(",") if t),
        enable_model_warmup=options.enable_model_warmup,
        num_request_iterations_for_warmup=(
            options.num_request_iterations_for_warmup),
        enable_signature_method_name_check=(
            options.enable_signature_method_name_check),
        intra_op_parallelism=options.tensorflow_intra_op_parallelism,
        inter_op_parallelism=options.tensorflow_inter_op_parallelism,
        session_run_in_caller_thread=options.session_run_in_caller_thread))
    self._manager.start(config)

    self._loop = runtime.new_event_loop()
    self._loop_thread = threading.Thread(
        target=self._loop.run_forever, name="model-server-loop", daemon=True)
    self._loop_thread.start()
    self._executor = concurrent.futures.ThreadPoolExecutor(
        max_workers=max(1, options.grpc_max_threads),
        thread_name_prefix="model-server")
    self._call(self._start_grpc(parameters, list(channel_arguments.items())))
    self._manager.add_listener(self._on_model_change)
    self._loop.call_soon_threadsafe(self._update_health)
    _LOG.info("Running gRPC ModelServer at %s:%d ...", options.host,
              self._port)

    if options.rest_api_port is not None:
      self._start_rest()
    if options.model_config_file and (
        options.model_config_file_poll_wait_seconds > 0):
      self._config_poller = threading.Thread(
          target=self._poll_config_file, name="config-poller", daemon=True)
      self._config_poller.start()

  def _start_rest(self) -> None:
    options = self._options
    if options.rest_api_port and options.rest_api_port == self._port:
      _LOG.error("server_options.http_port cannot be same as grpc_port."
                 " Please use a different port for HTTP/REST API. Skipped"
                 " exporting HTTP/REST API.")
      return
    # aiohttp on the gRPC server's loop: its handlers await the same
    # ServingService coroutines as the gRPC servicers.
    api = rest.RestApi(self._service, options.rest_api_timeout_in_ms)
    self._rest = self._call(rest.RestServer(
        api, options.host, options.rest_api_port,
        options.rest_api_max_body_bytes).start())
    _LOG.info("Exporting HTTP/REST API at:localhost:%d ...", self._rest.port)

  def _initial_config(self) -> apis.ModelServerConfig:
    options = self._options
    if options.model_server_config is not None:
      return options.model_server_config
    if options.model_config_file:
      return config_lib.read_model_server_config(options.model_config_file)
    if not options.model_base_path:
      raise status.invalid_argument(
          "Both server_options.model_base_path and"
          " server_options.model_config_file are empty!")
    base_path = options.model_base_path
    if config_lib.is_relative_path(base_path):
      base_path = os.path.abspath(base_path)
    return config_lib.single_model_config(options.model_name, base_path)

  async def _start_grpc(self, parameters: Optional[batching.BatchingParameters],
                        channel_arguments: list[tuple[str, Any]]) -> None:
    loop = asyncio.get_running_loop()
    if parameters is not None:
      self._batcher = batching.Batcher(
          parameters, loop, self._options.adaptive_batch_timeout)
    self._service = service_lib.ServingService(
        self._manager, loop, self._executor, self._batcher,
        self._options.enable_signature_method_name_check,
        inference.RequestLimits(
            self._options.max_request_string_bytes,
            self._options.max_string_element_bytes))
    server = grpc.aio.server(options=channel_arguments)
    grpc_services.add_to_server(self._service, server)
    server.add_generic_rpc_handlers((self._health.handler(),))
    address = f"{self._options.host}:{self._options.port}"
    port = server.add_insecure_port(address)
    if not port:
      raise status.invalid_argument(f"Failed to BuildAndStart gRPC server"
                                    f" at {address}")
    await server.start()
    self._server, self._port = server, port

  def _call(self, coroutine) -> Any:
    return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

  def _on_model_change(self) -> None:
    loop = self._loop
    if loop is not None and not loop.is_closed():
      try:
        loop.call_soon_threadsafe(self._update_health)
      except RuntimeError:
        pass  # The loop is shutting down.

  def _update_health(self) -> None:
    """Recomputes the health statuses (on the event loop)."""
    manager = self._manager
    names = manager.model_names()
    serving = {name: bool(manager.available_versions(name)) for name in names}
    for name, up in serving.items():
      self._health.set(name, health.SERVING if up else health.NOT_SERVING)
    overall = health.SERVING if all(serving.values()) else health.NOT_SERVING
    self._health.set(health.OVERALL, overall)
    self._health.set(apis.PREDICTION_SERVICE, overall)
    self._health.set(apis.MODEL_SERVICE, health.SERVING)

  def _poll_config_file(self) -> None:
    """--model_config_file_poll_wait_seconds: re-read and apply the file."""
    options = self._options
    while not self._stopping.wait(options.model_config_file_poll_wait_seconds):
      try:
        config = config_lib.read_model_server_config(options.model_config_file)
      except status.ServingError as e:
        _LOG.error("Failed to read ModelServerConfig file: %s", e.message)
        continue
      # Compared with the config in force, not the file's last text: a
      # HandleReloadConfigRequest may have changed it since, and a file that
      # went A -> B -> A between two polls must still bring back A.
      text = config_lib.format_model_server_config(config)
      if text == config_lib.format_model_server_config(self._manager.config()):
        continue
      try:
        self._manager.reload_config(config)
      except status.ServingError as e:
        _LOG.error("PollFilesystemAndReloadConfig failed to ReloadConfig: %s",
                   e.message)

  def stop(self, grace: Optional[float] = None) -> None:
    """Graceful shutdown: NOT_SERVING, refuse new calls, drain, unload.

    Args:
      grace: seconds calls in flight may still take; None waits for them.
    """
    if not self._started or self._stopped.is_set():
      return
    self._shutdown(grace)

  def _shutdown(self, grace: Optional[float]) -> None:
    self._stopping.set()
    if self._config_poller is not None:
      self._config_poller.join()
    loop = self._loop
    if loop is not None and loop.is_running():
      async def drain():
        self._health.enter_graceful_shutdown()
        stops = []
        if self._server is not None:
          stops.append(self._server.stop(grace))
        if self._rest is not None:
          stops.append(self._rest.stop(grace))
        await asyncio.gather(*stops)
      try:
        self._call(drain())
      except Exception:  # pylint: disable=broad-except
        _LOG.exception("Stopping the gRPC and REST servers failed")
    if self._batcher is not None:
      self._batcher.close()  # Before the versions it runs are unloaded.
    if self._manager is not None:
      self._manager.stop()
    if self._executor is not None:
      self._executor.shutdown(wait=True, cancel_futures=True)
    if loop is not None:
      loop.call_soon_threadsafe(loop.stop)
      if self._loop_thread is not None:
        self._loop_thread.join()
      loop.close()
    self._stopped.set()

  def wait(self, timeout: Optional[float] = None) -> bool:
    """Blocks until the server stops; False if `timeout` ran out first."""
    if not self._started:
      raise RuntimeError("ModelServer is not started")
    return self._stopped.wait(timeout)

  def poll(self, timeout: Optional[float] = None) -> None:
    """Polls the model base paths now; returns when loads are done."""
    self.manager.poll(timeout)

  def __enter__(self) -> ModelServer:
    return self.start()

  def __exit__(self, *exc_info) -> None:
    self.stop()


def serve_main(argv: Optional[list[str]] = None) -> int:
  """`mtrec serve`: serves models until Ctrl-C or SIGTERM.

  Takes tensorflow_model_server's flag names, so launch scripts and manifests
  switch between this server and the real binary by changing the command.

  Args:
    argv: arguments without the program name; None reads sys.argv.

  Returns:
    The process exit status.
  """
  parser = build_arg_parser()
  args = parser.parse_args(argv)
  logging.basicConfig(
      level=logging.INFO,
      format="%(asctime)s %(levelname).1s %(name)s] %(message)s")
  if not args.model_base_path and not args.model_config_file:
    parser.error("one of --model_base_path or --model_config_file is"
                 " required")
  for name in _IGNORED_FLAGS + ("rest_api_num_threads",):
    if getattr(args, name) is not None:
      _LOG.warning("--%s has no effect on this server", name)

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
      poll_wait_seconds=args.file_system_poll_wait_seconds,
      max_workers=args.grpc_max_threads,
      host=args.bind_address,
      rest_api_port=args.rest_api_port or None,
      rest_api_timeout_in_ms=args.rest_api_timeout_in_ms,
      rest_api_max_body_bytes=args.rest_api_max_body_bytes,
      model_config_file=args.model_config_file,
      model_config_file_poll_wait_seconds=(
          args.model_config_file_poll_wait_seconds),
      max_num_load_retries=args.max_num_load_retries,
      load_retry_interval_micros=args.load_retry_interval_micros,
      allow_version_labels_for_unavailable_models=(
          args.allow_version_labels_for_unavailable_models),
      enable_batching=args.enable_batching,
      batching_parameters_file=args.batching_parameters_file,
      adaptive_batch_timeout=args.adaptive_batch_timeout,
      grpc_channel_arguments=args.grpc_channel_arguments,
      max_request_string_bytes=args.max_request_string_bytes,
      max_string_element_bytes=args.max_string_element_bytes,
      enable_model_warmup=args.enable_model_warmup,
      num_request_iterations_for_warmup=args.num_request_iterations_for_warmup,
      saved_model_tags=args.saved_model_tags,
      enable_signature_method_name_check=(
          args.enable_signature_method_name_check),
      tensorflow_intra_op_parallelism=args.tensorflow_intra_op_parallelism,
      tensorflow_inter_op_parallelism=args.tensorflow_inter_op_parallelism,
      session_run_in_caller_thread=args.session_run_in_caller_thread)
  try:
    try:
      server.start()
    except RuntimeError as e:
      _LOG.error("%s", e)
      return 1
    # The models' Python objects (hundreds of thousands) live as long as the
    # process: keep them out of the garbage collector's full passes, which
    # would otherwise stall requests for tens of milliseconds now and then.
    gc.freeze()
    for name in server.manager.model_names():
      versions = server.manager.available_versions(name)
      if versions:
        _LOG.info("Serving model %s version %s", name,
                  ", ".join(str(v) for v in versions))
      else:
        _LOG.warning("Serving no version of %s yet; waiting for one", name)
    # A timed wait keeps the main thread responsive to signals everywhere.
    while not stop_requested.wait(0.5):
      pass
  finally:
    server.stop(grace=args.grace_period_seconds)
    for sig, handler in previous_handlers.items():
      signal.signal(sig, handler)
  _LOG.info("Server stopped")
  return 0


if __name__ == "__main__":
  sys.exit(serve_main())
