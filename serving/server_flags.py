"""tensorflow_model_server's options and flags, without TensorFlow.

`mtrec serve --help` (and anything else that only needs the flags, such as
tests/test_serving_deploy.py checking the manifests' flags) reads them from
here: importing serving/model_server.py loads TensorFlow, which takes
seconds and prints its C++ start-up lines.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
  from serving import apis
  from serving import batching

# The REST API's default body cap (serving/rest.py): TF Serving has none;
# 64 MiB is far above any real request and far below memory trouble.
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024

_CPUS = os.cpu_count() or 1


@dataclasses.dataclass
class ServerOptions:
  """tensorflow_model_server's options (flag names), plus `host`."""

  port: int = 8500
  host: str = "0.0.0.0"
  # None: no REST API (the flag's 0); 0 here picks a free port.
  rest_api_port: Optional[int] = None
  # Accepted for TF Serving's sake; no effect (REST runs on the event loop).
  rest_api_num_threads: int = 4 * _CPUS
  rest_api_timeout_in_ms: int = 30000
  # (mtrec) Largest REST request body (413 above it); 0: no limit.
  rest_api_max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
  model_name: str = "default"
  model_base_path: str = ""
  model_config_file: str = ""
  model_config_file_poll_wait_seconds: float = 0
  # A config given directly (tests, tools) instead of a file.
  model_server_config: Optional[apis.ModelServerConfig] = None
  file_system_poll_wait_seconds: float = 1.0
  max_num_load_retries: int = 5
  load_retry_interval_micros: int = 60_000_000
  allow_version_labels: bool = True
  allow_version_labels_for_unavailable_models: bool = False
  enable_batching: bool = False
  batching_parameters_file: str = ""
  # Parsed parameters given directly; overrides the file.
  batching_parameters: Optional[batching.BatchingParameters] = None
  # (mtrec) batch_timeout_micros only under load (batching.Batcher).
  adaptive_batch_timeout: bool = False
  grpc_max_threads: int = 4 * _CPUS
  grpc_channel_arguments: str = ""
  # (mtrec) Bounds on a request's string inputs; 0: none, as in TF Serving.
  max_request_string_bytes: int = 0
  max_string_element_bytes: int = 0
  enable_model_warmup: bool = True
  num_request_iterations_for_warmup: int = 1
  saved_model_tags: str = "serve"
  enable_signature_method_name_check: bool = False
  tensorflow_intra_op_parallelism: int = 0
  tensorflow_inter_op_parallelism: int = 0
  # (mtrec) Session::Run on the calling thread, not TF's inter-op pool.
  session_run_in_caller_thread: bool = True


def _bool(text: str) -> bool:
  value = text.strip().lower()
  if value in ("1", "true", "yes"):
    return True
  if value in ("0", "false", "no"):
    return False
  raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


_IGNORED_FLAGS = (
    # Accepted so that a command line written for the real binary runs here;
    # they tune parts of TF Serving this server does not have.
    "num_load_threads", "num_unload_threads", "flush_filesystem_caches",
    "per_process_gpu_memory_fraction", "tensorflow_session_parallelism",
    "monitoring_config_file", "remove_unused_fields_from_bundle_metagraph",
    "enable_profiler", "xla_cpu_compilation_enabled",
    "enable_per_model_batching_parameters",
)


def build_arg_parser() -> argparse.ArgumentParser:
  """tensorflow_model_server's flags, same names and defaults."""
  defaults = ServerOptions()
  parser = argparse.ArgumentParser(
      prog="mtrec serve",
      description="Serve SavedModels over TensorFlow Serving's gRPC and REST"
      " APIs, with tensorflow_model_server's flags.")
  add = parser.add_argument
  add("--port", type=int, default=defaults.port,
      help="TCP port for the gRPC API (0: any free port).")
  add("--rest_api_port", type=int, default=0,
      help="Port for the HTTP/REST API; 0 (default) turns it off. Must differ"
      " from --port.")
  add("--rest_api_num_threads", type=int, default=None,
      help="Accepted for TF Serving's sake; no effect here: REST requests are"
      " answered on the server's event loop, model calls on its pool.")
  add("--rest_api_timeout_in_ms", type=int,
      default=defaults.rest_api_timeout_in_ms, help="Timeout of REST calls.")
  add("--rest_api_max_body_bytes", type=int,
      default=defaults.rest_api_max_body_bytes,
      help="(mtrec) Largest REST request body; a larger one is answered 413"
      " (from its Content-Length, before it is read). 0: no limit.")
  add("--model_name", default=defaults.model_name,
      help="Name of the model (ignored with --model_config_file).")
  add("--model_base_path", default="",
      help="Directory of the numbered versions (ignored with"
      " --model_config_file).")
  add("--model_config_file", default="",
      help="A text ModelServerConfig: several models, version policies,"
      " labels.")
  add("--model_config_file_poll_wait_seconds", type=float, default=0,
      help="Re-read --model_config_file this often; 0 reads it once.")
  add("--file_system_poll_wait_seconds", type=float,
      default=defaults.file_system_poll_wait_seconds,
      help="Seconds between polls for new versions; 0 polls once at start,"
      " a negative value never.")
  add("--max_num_load_retries", type=int,
      default=defaults.max_num_load_retries,
      help="Retries of a failed load before giving up.")
  add("--load_retry_interval_micros", type=int,
      default=defaults.load_retry_interval_micros,
      help="Wait between load retries.")
  add("--allow_version_labels_for_unavailable_models", type=_bool, nargs="?",
      const=True, default=False,
      help="Let a new label point at a version that is not loaded yet.")
  add("--enable_batching", type=_bool, nargs="?", const=True, default=False,
      help="Batch concurrent requests on the server.")
  add("--batching_parameters_file", default="",
      help="A text BatchingParameters (needs --enable_batching).")
  add("--adaptive_batch_timeout", type=_bool, nargs="?", const=True,
      default=defaults.adaptive_batch_timeout,
      help="(mtrec) Hold a partial batch for batch_timeout_micros only while"
      " requests arrive during model calls; at an idle server a request"
      " runs at once.")
  add("--grpc_max_threads", type=int, default=defaults.grpc_max_threads,
      help="Threads that run unbatched model calls.")
  add("--grpc_channel_arguments", default="",
      help="Comma-separated gRPC server arguments, e.g."
      " grpc.max_receive_message_length=67108864.")
  add("--max_request_string_bytes", type=int, default=0,
      help="(mtrec) Largest total of string input bytes in one request"
      " (RESOURCE_EXHAUSTED above it); 0: no limit, as TF Serving.")
  add("--max_string_element_bytes", type=int, default=0,
      help="(mtrec) Largest single string input value, e.g. 256 for ids"
      " (INVALID_ARGUMENT above it); 0: no limit, as TF Serving.")
  add("--enable_model_warmup", type=_bool, nargs="?", const=True,
      default=True,
      help="Replay assets.extra/tf_serving_warmup_requests before serving a"
      " version.")
  add("--num_request_iterations_for_warmup", type=int, default=1,
      help="Times each warmup record is replayed.")
  add("--saved_model_tags", default=defaults.saved_model_tags,
      help="Comma-separated tags of the MetaGraph to load.")
  add("--enable_signature_method_name_check", type=_bool, nargs="?",
      const=True, default=False,
      help="Require classify/regress method names on Classify and Regress.")
  add("--tensorflow_intra_op_parallelism", type=int, default=0,
      help="Threads per op; 0 lets TensorFlow choose, or with"
      " --session_run_in_caller_thread means 1 (servables.session_config).")
  add("--tensorflow_inter_op_parallelism", type=int, default=0,
      help="Ops run concurrently; 0 lets TensorFlow choose.")
  add("--session_run_in_caller_thread", type=_bool, nargs="?", const=True,
      default=defaults.session_run_in_caller_thread,
      help="(mtrec) Run each model call on the thread that asked for it"
      " instead of TensorFlow's inter-op pool; faster for small graphs.")
  add("--bind_address", default=defaults.host,
      help="(mtrec) Interface to bind both APIs to; TF Serving always binds"
      " 0.0.0.0.")
  add("--grace_period_seconds", type=float, default=10.0,
      help="(mtrec) On SIGTERM, how long calls in flight may still take.")
  for name in _IGNORED_FLAGS:
    add(f"--{name}", default=None, help=argparse.SUPPRESS)
  return parser
