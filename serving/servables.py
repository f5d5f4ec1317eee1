"""One loaded model version (a servable) and calling its signatures.

TF Serving loads a SavedModel's MetaGraph into a TensorFlow Session and runs
a SignatureDef by feeding and fetching the tensor names it lists. This module
does exactly that (tf.compat.v1 loader, one Session per version, a
Session callable per signature), for three reasons: the graph that runs is
the one TF Serving runs, including TF2 exports' StatefulPartitionedCall
nodes; TF1 SavedModels (classify and regress signatures) load the same way;
and a Session callable costs far less Python per call than calling a
`tf.saved_model.load` function (which re-validates its arguments in Python),
which matters on a server that is CPU-bound. Arrays go in and come out: the
rest of the server never touches TensorFlow objects.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from typing import Any, Mapping, Optional, Sequence

from google.protobuf import text_format
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow.core.protobuf import saved_model_pb2

from serving import status
from serving import tensors

_LOG = logging.getLogger("serving.servables")

SERVE_TAG = "serve"  # TF Serving's default --saved_model_tags.


@dataclasses.dataclass(frozen=True)
class TensorInfo:
  """One input or output of a signature."""

  alias: str
  name: str  # The graph tensor name, e.g. "serving_default_user_id:0".
  dtype: int  # A tensorflow DataType enum value.
  shape: tf.TensorShape
  # The shape as plain Python (None: unknown rank; None entries: unknown
  # dimensions), so a request is checked without building a TensorShape.
  dims: Optional[tuple[Optional[int], ...]] = dataclasses.field(
      init=False, repr=False, compare=False)

  def __post_init__(self):
    dims = None if self.shape.rank is None else tuple(self.shape.as_list())
    object.__setattr__(self, "dims", dims)

  def accepts(self, shape: Sequence[int]) -> bool:
    """TensorShape.is_compatible_with(shape), for a concrete array shape.

    The same answer at a fraction of the cost: every request's every input
    passes through here on the event loop.
    """
    dims = self.dims
    if dims is None:
      return True
    if len(dims) != len(shape):
      return False
    for expected, size in zip(dims, shape):
      if expected is not None and expected != size:
        return False
    return True


class Signature:
  """A SignatureDef and the Session that computes it."""

  def __init__(self, name: str, definition: meta_graph_pb2.SignatureDef,
               session: Any, run_options: Optional[Any] = None):
    self.name = name
    self.definition = definition
    self.method_name = definition.method_name
    self.inputs = {
        alias: TensorInfo(alias, info.name, info.dtype,
                          tf.TensorShape(info.tensor_shape))
        for alias, info in sorted(definition.inputs.items())
    }
    self.outputs = {
        alias: TensorInfo(alias, info.name, info.dtype,
                          tf.TensorShape(info.tensor_shape))
        for alias, info in sorted(definition.outputs.items())
    }
    self.defaults = {
        alias: tensors.to_ndarray(proto)
        for alias, proto in definition.defaults.items()
    }
    # Session::Run numbers its feeds by sorted tensor name; TF Serving's dtype
    # errors ("Expects arg[1] to be ...") use that number.
    feed_names = sorted(info.name for info in self.inputs.values())
    self.arg_index = {
        alias: feed_names.index(info.name)
        for alias, info in self.inputs.items()
    }
    self._session = session
    self._run_options = run_options
    self._input_aliases = list(self.inputs)
    self.output_aliases = tuple(self.outputs)  # Sorted, as in responses.
    self._callable = None
    self._lock = threading.Lock()

  def _get_callable(self):
    if self._callable is None:
      with self._lock:
        if self._callable is None:
          # Inputs that feed the same tensor (possible in TF1 graphs) are fed
          # once; outputs that fetch the same tensor are fetched once.
          feeds = list(dict.fromkeys(
              self.inputs[a].name for a in self._input_aliases))
          fetches = list(dict.fromkeys(
              self.outputs[a].name for a in self.output_aliases))
          # A callable made from CallableOptions (TF_SessionMakeCallable,
          # what Keras' v1 backend uses) takes the arrays as they are.
          # Session.make_callable with a feed list is Session.run underneath,
          # which re-checks every feed and fetch in Python on each call, a
          # large share of a one-user `recommend` (docs/design_measurements.md).
          options = config_pb2.CallableOptions(feed=feeds, fetch=fetches)
          if self._run_options is not None:
            options.run_options.CopyFrom(self._run_options)
          with self._session.graph.as_default():
            # pylint: disable-next=protected-access
            run = self._session._make_callable_from_options(options)
          self._callable = (run, feeds, fetches)
    return self._callable

  def __call__(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Runs the signature on validated inputs (alias -> array).

    Raises:
      status.ServingError: the computation failed, with TensorFlow's code
        (INVALID_ARGUMENT for failed assertions, bad indices, ...) and
        message, as Session::Run reports it in TF Serving.
    """
    run, feeds, fetches = self._get_callable()
    by_name = {self.inputs[alias].name: value
               for alias, value in inputs.items()}
    try:
      values = run(*(by_name[name] for name in feeds))
    except tf.errors.OpError as e:
      raise status.from_exception(e) from None
    except (TypeError, ValueError) as e:
      raise status.invalid_argument(str(e)) from None
    fetched = dict(zip(fetches, values))
    return {alias: fetched[info.name] for alias, info in self.outputs.items()}


class Servable:
  """A loaded version of a model: its signatures, ready to run."""

  def __init__(self, model_name: str, version: int, path: str, session: Any,
               signature_defs: Mapping[str, meta_graph_pb2.SignatureDef],
               run_options: Optional[Any] = None):
    self.model_name = model_name
    self.version = version
    self.path = path
    # The Session owns the graph and the variables; requests that resolved
    # this version keep it alive until they finish, even after an unload.
    self._session = session
    self.signature_defs = dict(signature_defs)
    self.signatures = {
        name: Signature(name, definition, session, run_options)
        for name, definition in self.signature_defs.items()
    }

  def __repr__(self) -> str:
    return f"Servable({self.model_name!r}, {self.version})"

  def __del__(self):
    session = getattr(self, "_session", None)
    if session is not None:
      try:
        session.close()
      except Exception:  # pylint: disable=broad-except
        pass


def read_signature_defs(
    path: str, tags: Sequence[str] = (SERVE_TAG,)
) -> dict[str, meta_graph_pb2.SignatureDef]:
  """The SignatureDefs of the MetaGraph with exactly `tags`, as TF Serving."""
  saved_model = saved_model_pb2.SavedModel()
  binary_path = os.path.join(path, "saved_model.pb")
  if tf.io.gfile.exists(binary_path):
    with tf.io.gfile.GFile(binary_path, "rb") as f:
      saved_model.ParseFromString(f.read())
  else:
    with tf.io.gfile.GFile(os.path.join(path, "saved_model.pbtxt"), "r") as f:
      text_format.Parse(f.read(), saved_model)
  wanted = set(tags)
  for meta_graph in saved_model.meta_graphs:
    if set(meta_graph.meta_info_def.tags) == wanted:
      return dict(meta_graph.signature_def)
  raise status.not_found(
      f"Could not find meta graph def matching supplied tags: {{"
      f" {' '.join(sorted(wanted))} }}. To inspect available tag-sets in the"
      " SavedModel, please use the SavedModel CLI: `saved_model_cli`")


def session_config(intra_op_parallelism: int = 0,
                   inter_op_parallelism: int = 0,
                   run_in_caller_thread: bool = False) -> Any:
  """The ConfigProto TF Serving builds from its parallelism flags.

  One difference: with `run_in_caller_thread` (caller_thread_run_options),
  an intra-op parallelism of 0 ("let TensorFlow choose") means 1. The
  server's own threads (one per batch or request) already run calls side
  by side, and splitting a small op across cores costs more in hand-offs
  than it saves once the server's own threads want the cores too: on the
  MovieLens model on 2 cores, one thread per op gave `recommend` more QPS
  under concurrent load, and a lower p50 one request at a time, than two
  (figures in docs/design_measurements.md).
  """
  if run_in_caller_thread and intra_op_parallelism == 0:
    intra_op_parallelism = 1
  return tf.compat.v1.ConfigProto(
      intra_op_parallelism_threads=intra_op_parallelism,
      inter_op_parallelism_threads=inter_op_parallelism)


def caller_thread_run_options() -> Any:
  """RunOptions that execute Session::Run on the calling thread.

  For a small graph (a recommender's towers and a top-k) the hand-off to
  TensorFlow's inter-op pool and back is a measurable share of the call
  (docs/design_measurements.md); the server
  already runs calls concurrently on its own threads (batch threads or the
  request pool), so each call may as well run where it is.
  """
  return tf.compat.v1.RunOptions(inter_op_thread_pool=-1)


def load(model_name: str, version: int, path: str,
         tags: Sequence[str] = (SERVE_TAG,),
         config: Optional[Any] = None,
         run_options: Optional[Any] = None) -> Servable:
  """Loads one version into its own graph and Session.

  Raises:
    status.ServingError: with the loader's status (e.g. NOT_FOUND for a
      missing tag-set, DATA_LOSS or INVALID_ARGUMENT for a corrupt file).
  """
  try:
    signature_defs = read_signature_defs(path, tags)
    graph = tf.Graph()
    session = tf.compat.v1.Session(graph=graph, config=config)
    try:
      with graph.as_default(), _quiet_deprecations():
        tf.compat.v1.saved_model.loader.load(session, list(tags), path)
    except BaseException:
      session.close()
      raise
  except status.ServingError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    raise status.from_exception(e) from None
  return Servable(model_name, version, path, session, signature_defs,
                  run_options)


def _quiet_deprecations():
  """The v1 loader is TF Serving's way, not a mistake: no warning for it."""
  try:
    # pylint: disable-next=g-import-not-at-top
    from tensorflow.python.util import deprecation
    return deprecation.silence()
  except (ImportError, AttributeError):
    import contextlib  # pylint: disable=g-import-not-at-top
    return contextlib.nullcontext()
