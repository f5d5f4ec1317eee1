"""Which versions of which models are loaded: TF Serving's ServerCore, small.

TF Serving keeps a set of models (a ModelServerConfig), polls each model's
base path for integer version directories, asks the version policy which of
them should be loaded, and lets an AvailabilityPreservingPolicy order the
loads and unloads so that a model never goes from serving to not serving
while an aspired version is still on its way. A ServableStateMonitor records
every version's state (START, LOADING, AVAILABLE, UNLOADING, END, with the
error of a failed load) for GetModelStatus, and a label map resolves version
labels. This module is that machinery:

* one background thread polls every `file_system_poll_wait_seconds`, or when
  a config reload wakes it, and applies at most one load or unload at a time
  per model, exactly in the policy's order: unload a non-aspired version when
  nothing is aspired, when an aspired version is already serving, or when more
  than one non-aspired version serves; otherwise load the highest new aspired
  version. A load reads the SavedModel, replays its warmup records, and only
  then publishes the version;
* requests resolve a ModelSpec to a loaded servable without a lock: the
  published map is replaced, never mutated, so a request that started on a
  version finishes on it even while that version is being unloaded;
* ReloadConfig validates the new config and its labels first and keeps the
  old config when either fails, as TF Serving does; then it waits until the
  models it added have loaded (or failed).

Deliberate differences: a base path with no version yet is not a startup
error (the model answers NOT_FOUND until one appears, which suits a laptop
that starts the server before the first push), and a directory missing its
saved_model.pb is not a version yet (see config.list_versions).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Callable, Iterable, Optional

import grpc

from serving import apis
from serving import config as config_lib
from serving import inference
from serving import servables
from serving import status
from serving import warmup

_LOG = logging.getLogger("serving.manager")

State = apis.ModelVersionStatus.State


@dataclasses.dataclass(frozen=True)
class VersionState:
  """What the ServableStateMonitor knows of one version."""

  state: int  # A ModelVersionStatus.State value.
  error: Optional[status.ServingError] = None


@dataclasses.dataclass(frozen=True)
class ManagerOptions:
  """The ServerCore options TF Serving exposes as flags (same defaults)."""

  file_system_poll_wait_seconds: float = 1.0
  max_num_load_retries: int = 5
  load_retry_interval_micros: int = 60_000_000
  allow_version_labels: bool = True
  allow_version_labels_for_unavailable_models: bool = False
  saved_model_tags: tuple[str, ...] = (servables.SERVE_TAG,)
  enable_model_warmup: bool = True
  num_request_iterations_for_warmup: int = 1
  enable_signature_method_name_check: bool = False
  # --tensorflow_intra_op_parallelism / --tensorflow_inter_op_parallelism.
  intra_op_parallelism: int = 0
  inter_op_parallelism: int = 0
  # Run each Session call on the calling thread (servables.py explains).
  session_run_in_caller_thread: bool = True


@dataclasses.dataclass(frozen=True)
class _Serving:
  """The published, immutable view of one model's loaded versions."""

  by_version: dict[int, servables.Servable]
  latest: Optional[servables.Servable]


def _servable_id(name: str, version: int) -> str:
  return f"{{name: {name} version: {version}}}"


class ModelManager:
  """Loads, serves and unloads the versions a ModelServerConfig asks for."""

  def __init__(self, options: ManagerOptions = ManagerOptions()):
    self._options = options
    self._lock = threading.RLock()  # Guards everything below but _serving.
    self._config = apis.ModelServerConfig()
    self._models: dict[str, apis.ModelConfig] = {}
    self._labels: dict[str, dict[str, int]] = {}
    self._monitor: dict[str, dict[int, VersionState]] = {}
    self._failed: dict[str, set[int]] = {}
    self._path_problems: dict[str, str] = {}
    # name -> _Serving; replaced as a whole, read without the lock.
    self._serving: dict[str, _Serving] = {}
    self._listeners: list[Callable[[], None]] = []
    self._reload_lock = threading.Lock()  # One ReloadConfig at a time.
    self._work = threading.Condition(self._lock)
    self._wake_requested = False
    self._passes_started = 0
    self._passes_done = 0
    self._stop = threading.Event()
    self._thread: Optional[threading.Thread] = None

  @property
  def options(self) -> ManagerOptions:
    return self._options

  # Lifecycle.

  def start(self, config: apis.ModelServerConfig) -> None:
    """Applies the initial config and loads its models (ServerCore::Create).

    Returns once every model's first poll is done: the versions present have
    loaded. Then polls every file_system_poll_wait_seconds (0: never again,
    a negative value: not even now).

    Raises:
      status.ServingError: an invalid config or label, or an initial version
        that failed to load (TF Serving refuses to start then too).
    """
    self._apply_config(config, first=True)
    new_models = set(self._models)
    if self._options.file_system_poll_wait_seconds >= 0:
      self._reconcile_all()
      self._check_models_available(new_models)
    self._thread = threading.Thread(
        target=self._run, name="model-manager", daemon=True)
    self._thread.start()

  def stop(self) -> None:
    """Stops polling and unloads everything."""
    self._stop.set()
    with self._work:
      self._work.notify_all()
    if self._thread is not None:
      self._thread.join()
    with self._lock:
      for name, serving in list(self._serving.items()):
        for version in sorted(serving.by_version):
          self._set_state(name, version, VersionState(State.END))
      self._serving = {}
    self._notify()

  def add_listener(self, callback: Callable[[], None]) -> None:
    """Calls `callback` (from the manager's thread) after state changes."""
    self._listeners.append(callback)

  # Requests.

  def resolve(self, model_spec: apis.ModelSpec) -> servables.Servable:
    """The loaded servable a ModelSpec asks for (ServerCore semantics).

    Raises:
      status.ServingError: INVALID_ARGUMENT for a missing name or an unknown
        label, NOT_FOUND when no such version is loaded.
    """
    name = model_spec.name
    if not name:
      raise status.invalid_argument("ModelSpec has no name specified.")
    choice = model_spec.WhichOneof("version_choice")
    version = None
    if choice == "version_label":
      if not self._options.allow_version_labels:
        raise status.invalid_argument(
            "ModelSpec has 'version_label' set, but it is not currently"
            " allowed by the server.")
      version = self._labels.get(name, {}).get(model_spec.version_label)
      if version is None:
        raise status.invalid_argument(
            "Unrecognized servable version label:"
            f" {model_spec.version_label}")
    elif choice == "version":
      version = model_spec.version.value
    serving = self._serving.get(name)
    if version is None:
      if serving is None or serving.latest is None:
        raise status.not_found(
            f"Servable not found for request: Latest({name})")
      return serving.latest
    servable = serving.by_version.get(version) if serving else None
    if servable is None:
      raise status.not_found(
          f"Servable not found for request: Specific({name}, {version})")
    return servable

  def version_states(self, model_spec: apis.ModelSpec
                    ) -> list[tuple[int, VersionState]]:
    """GetModelStatus: (version, state), newest first.

    Raises:
      status.ServingError: NOT_FOUND as TF Serving words it.
    """
    name = model_spec.name
    with self._lock:
      states = dict(self._monitor.get(name, {}))
    if model_spec.WhichOneof("version_choice") == "version":
      version = model_spec.version.value
      if version not in states:
        raise status.not_found(
            f"Could not find version {version} of model {name}")
      return [(version, states[version])]
    if not states:
      raise status.not_found(f"Could not find any versions of model {name}")
    return sorted(states.items(), reverse=True)

  def model_names(self) -> list[str]:
    with self._lock:
      return list(self._models)

  def available_versions(self, name: str) -> list[int]:
    serving = self._serving.get(name)
    return sorted(serving.by_version) if serving else []

  def config(self) -> apis.ModelServerConfig:
    with self._lock:
      copy = apis.ModelServerConfig()
      copy.CopyFrom(self._config)
      return copy

  # Configuration.

  def reload_config(self, config: apis.ModelServerConfig,
                    timeout: Optional[float] = None) -> None:
    """HandleReloadConfigRequest: replace the config, load the new models.

    Raises:
      status.ServingError: the config or its labels are invalid (the old
        config stays), or a model it added did not become available.
    """
    with self._reload_lock:
      before = set(self._models)
      self._apply_config(config, first=False)
      new_models = set(self._models) - before
      if not new_models or self._options.file_system_poll_wait_seconds < 0:
        self.wake()
        return
      self._wait_for_pass(timeout)
      self._check_models_available(new_models)

  def poll(self, timeout: Optional[float] = None) -> None:
    """Polls now and returns when that poll (loads included) is done."""
    if self._thread is None:
      self._reconcile_all()
      return
    self._wait_for_pass(timeout)

  def wake(self) -> None:
    """Polls now instead of at the next interval."""
    with self._work:
      self._wake_requested = True
      self._work.notify_all()

  def _wait_for_pass(self, timeout: Optional[float]) -> None:
    """Waits until a whole poll that started after now has finished."""
    deadline = None if timeout is None else time.monotonic() + timeout
    with self._work:
      # A pass already under way may have read the old config: wait for the
      # one after it.
      target = self._passes_started + 1
      self._wake_requested = True
      self._work.notify_all()
      while self._passes_done < target and not self._stop.is_set():
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
          raise status.ServingError(grpc.StatusCode.DEADLINE_EXCEEDED,
                                    "Timed out waiting for models to load")
        self._work.wait(remaining if remaining is not None else 1.0)

  def _apply_config(self, config: apis.ModelServerConfig, first: bool) -> None:
    config_lib.validate(config)
    if config.WhichOneof("config") is None:
      _LOG.info("Taking no action for empty config.")
      return
    models = {m.name: m for m in config.model_config_list.config}
    with self._lock:
      labels = self._validated_labels(models.values())
      self._config = apis.ModelServerConfig()
      self._config.CopyFrom(config)
      removed = set(self._models) - set(models)
      self._models = {}
      for name, model in models.items():
        copy = apis.ModelConfig()
        copy.CopyFrom(model)
        self._models[name] = copy
        self._failed.setdefault(name, set())
      self._labels = labels
      for name in removed:
        # The next poll unloads its versions: none is aspired any more.
        _LOG.info("Removing model %s from the config", name)
    _LOG.info("Finished %s config", "applying" if first else "reloading")

  def _validated_labels(self, models: Iterable[apis.ModelConfig]
                       ) -> dict[str, dict[str, int]]:
    """UpdateModelVersionLabelMap: labels may only name AVAILABLE versions."""
    options = self._options
    labels: dict[str, dict[str, int]] = {}
    for model in models:
      states = self._monitor.get(model.name, {})
      for label, version in sorted(model.version_labels.items()):
        allow_unavailable = False
        if options.allow_version_labels_for_unavailable_models:
          existing = self._labels.get(model.name, {}).get(label)
          # A label may move to a version that is not available yet only if
          # it is new (TF Serving's rule).
          allow_unavailable = existing is None or existing == version
        state = states.get(version)
        if not allow_unavailable and (state is None or
                                      state.state != State.AVAILABLE):
          raise status.failed_precondition(
              f"Request to assign label to version {version} of model"
              f" {model.name}, which is not currently available for"
              " inference")
        labels.setdefault(model.name, {})[label] = version
    if not options.allow_version_labels and labels:
      raise status.failed_precondition(
          "Model version labels are not currently allowed by the server.")
    return labels

  def _check_models_available(self, names: Iterable[str]) -> None:
    """WaitUntilModelsAvailable's verdict once the models' loads are done."""
    problems = []
    with self._lock:
      for name in sorted(names):
        if name not in self._models or self._serving.get(name):
          continue
        failed = [(v, s) for v, s in self._monitor.get(name, {}).items()
                  if s.error is not None]
        for version, state in sorted(failed):
          problems.append(f"{{{_servable_id(name, version)} due to error:"
                          f" {state.error}}}, ")
    if problems:
      raise status.unknown(
          f"{len(problems)} model(s) did not become available: {{"
          + "".join(problems) + "}")

  # The polling thread.

  def _run(self) -> None:
    interval = self._options.file_system_poll_wait_seconds
    while not self._stop.is_set():
      with self._work:
        if not self._wake_requested:
          # 0 or less: no periodic polls; only wake() (a reload) polls.
          self._work.wait(interval if interval > 0 else None)
        self._wake_requested = False
        if self._stop.is_set():
          break
        self._passes_started += 1
      try:
        self._reconcile_all()
      except Exception:  # pylint: disable=broad-except
        _LOG.exception("Polling the model base paths failed")
      with self._work:
        self._passes_done += 1
        self._work.notify_all()

  def _reconcile_all(self) -> None:
    with self._lock:
      names = set(self._models) | set(self._serving)
    for name in sorted(names):
      if self._stop.is_set():
        return
      with self._lock:
        model = self._models.get(name)
      if model is None:
        self._reconcile(name, None)
        continue
      versions = config_lib.list_versions(model.base_path)
      if versions is None:
        self._report_path_problem(
            name, f"File system storage path source: Could not find base path"
            f" {model.base_path} for servable {name}")
        continue
      if not versions:
        self._report_path_problem(
            name, f"No versions of servable {name} found under base path"
            f" {model.base_path}. Did you forget to name your leaf directory"
            " as a number (eg. '/1/')?")
      else:
        self._path_problems.pop(name, None)
      self._reconcile(name, (model, versions))

  def _report_path_problem(self, name: str, problem: str) -> None:
    if self._path_problems.get(name) != problem:
      _LOG.warning("%s", problem)
      self._path_problems[name] = problem

  def _reconcile(self, name: str,
                 target: Optional[tuple[apis.ModelConfig, dict[int, str]]]
                ) -> None:
    """Applies the availability-preserving policy until nothing is left."""
    if target is None:
      aspired: set[int] = set()
      paths: dict[int, str] = {}
      model = None
    else:
      model, paths = target
      aspired = config_lib.aspired_versions(model, paths)
    with self._lock:
      failed = self._failed.setdefault(name, set())
      failed.intersection_update(paths)  # A version that left may retry.
    while not self._stop.is_set():
      serving = self._serving.get(name)
      loaded = set(serving.by_version) if serving else set()
      unaspired = loaded - aspired
      if unaspired and (not aspired or (aspired & loaded) or
                        len(unaspired) > 1):
        self._unload(name, min(unaspired))
        continue
      candidates = aspired - loaded - failed
      if candidates and model is not None:
        version = max(candidates)
        self._load(model, version, paths[version])
        continue
      break
    if target is None:
      with self._lock:
        if name not in self._models:
          self._serving.pop(name, None)

  def _load(self, model: apis.ModelConfig, version: int, path: str) -> None:
    name = model.name
    options = self._options
    _LOG.info("Approving load for servable version %s",
              _servable_id(name, version))
    self._set_state(name, version, VersionState(State.START))
    self._set_state(name, version, VersionState(State.LOADING))
    self._notify()
    attempts = 1 + max(0, options.max_num_load_retries)
    error = None
    for attempt in range(attempts):
      if attempt:
        interval = max(0, options.load_retry_interval_micros) / 1e6
        if self._stop.wait(interval):
          return
      _LOG.info("Loading servable version %s from %s",
                _servable_id(name, version), path)
      try:
        servable = servables.load(
            name, version, path, options.saved_model_tags,
            servables.session_config(options.intra_op_parallelism,
                                     options.inter_op_parallelism,
                                     options.session_run_in_caller_thread),
            servables.caller_thread_run_options()
            if options.session_run_in_caller_thread else None)
        if options.enable_model_warmup:
          warmup.run_warmup(
              path, lambda log, s=servable: self._run_warmup_record(s, log),
              options.num_request_iterations_for_warmup)
      except status.ServingError as e:
        error = e
        _LOG.error("Loading servable: %s failed: %s",
                   _servable_id(name, version), e)
        continue
      self._publish(name, servable)
      _LOG.info("Successfully loaded servable version %s",
                _servable_id(name, version))
      self._notify()
      return
    with self._lock:
      self._failed.setdefault(name, set()).add(version)
    self._set_state(name, version, VersionState(State.END, error))
    _LOG.error("Giving up loading servable version %s after %d attempt(s)",
               _servable_id(name, version), attempts)
    self._notify()

  def _run_warmup_record(self, servable: servables.Servable,
                         log: apis.PredictionLog) -> None:
    check = self._options.enable_signature_method_name_check
    kind = log.WhichOneof("log_type")
    if kind == "predict_log":
      request = log.predict_log.request
      planner = inference.plan_predict
    elif kind == "classify_log":
      request = log.classify_log.request
      planner = inference.plan_classify
    elif kind == "regress_log":
      request = log.regress_log.request
      planner = inference.plan_regress
    else:
      request = log.multi_inference_log.request
      planner = inference.plan_multi_inference
    if kind != "multi_inference_log" and not request.HasField("model_spec"):
      # Warmup runs on the servable directly; TF Serving never asks for one.
      copy = type(request)()
      copy.CopyFrom(request)
      copy.model_spec.SetInParent()
      request = copy
    inference.run_inline(planner(servable, request, check))

  def _publish(self, name: str, servable: servables.Servable) -> None:
    with self._lock:
      serving = self._serving.get(name)
      by_version = dict(serving.by_version) if serving else {}
      by_version[servable.version] = servable
      self._serving[name] = _Serving(by_version,
                                     by_version[max(by_version)])
      self._set_state(name, servable.version, VersionState(State.AVAILABLE))

  def _unload(self, name: str, version: int) -> None:
    _LOG.info("Quiescing servable version %s", _servable_id(name, version))
    with self._lock:
      self._set_state(name, version, VersionState(State.UNLOADING))
      serving = self._serving.get(name)
      by_version = dict(serving.by_version) if serving else {}
      by_version.pop(version, None)
      self._serving[name] = _Serving(
          by_version, by_version[max(by_version)] if by_version else None)
      self._set_state(name, version, VersionState(State.END))
    # Requests that resolved this version keep their reference; the Python
    # objects (and the model's memory) go when the last of them finishes.
    _LOG.info("Done unloading servable version %s",
              _servable_id(name, version))
    self._notify()

  def _set_state(self, name: str, version: int, state: VersionState) -> None:
    with self._lock:
      self._monitor.setdefault(name, {})[version] = state

  def _notify(self) -> None:
    for callback in list(self._listeners):
      try:
        callback()
      except Exception:  # pylint: disable=broad-except
        _LOG.exception("Model state listener failed")
