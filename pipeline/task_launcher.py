"""Runs one compiled KFP task on this machine, the way its container would.

The command is the task's own from the compiled pipeline spec: `sh -ec`
writing the component's embedded source to a file and starting
`python3 -m kfp.dsl.executor_main` on it, with the executor input (parameter
values, input artifacts, output artifact URIs) that a KFP backend would
pass. The executor input and placeholder resolution come from kfp.local's
own helpers (kfp is pinned), with `python3` swapped for this interpreter as
kfp.local.SubprocessRunner(use_venv=False) does. Each task is a fresh
process, as on a cluster: TensorFlow state (e.g. the logical CPU devices the
trainer's num_cpu_devices asks for) never leaks from one step into the next.

The child's output goes, whole, to a log file; the console gets it indented,
without the KFP executor's bookkeeping and TensorFlow's C++ startup lines.
A step that shows nothing for a while gets a "still running" line (Heartbeat).
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import threading
import time
from typing import Any, Callable, Optional

from kfp.pipeline_spec import pipeline_spec_pb2

from pipeline import kfp_local
from pipeline import multi_worker
from pipeline import step_deps

# KFP artifact types that are single files the Kubeflow UI renders; locally
# they get an extension so a browser or editor opens them too.
FILE_SUFFIXES = {"system.HTML": ".html", "system.Markdown": ".md"}

# The KFP executor logs every record at INFO to stdout with this prefix.
_KFP_RECORD = re.compile(r"^\[KFP Executor [\d\- :,]+ ([A-Z]+)\]: ?")
# TensorFlow's C++ lines from before absl is initialized (TF_CPP_MIN_LOG_LEVEL
# does not reach them).
_TF_STARTUP = re.compile(
    r"^(WARNING: All log messages before absl::|"
    r"[IWEF]\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] )")
_TRACEBACK = "Traceback (most recent call last):"


@dataclasses.dataclass
class TaskResult:
  succeeded: bool
  seconds: float
  outputs: dict[str, Any]  # KFP outputs: artifacts and parameters
  error: Optional[str] = None  # "ExceptionType: message"
  traceback: Optional[str] = None


def output_uris(component_spec: pipeline_spec_pb2.ComponentSpec,
                task_root: str) -> dict[str, str]:
  """Output artifact name -> local URI under `task_root`."""
  return {
      name: os.path.join(task_root, name) + FILE_SUFFIXES.get(
          spec.artifact_type.schema_title, "")
      for name, spec in component_spec.output_definitions.artifacts.items()}


def embedded_source(container: Any) -> tuple[str, str]:
  """(component source, function name) from a lightweight task's command."""
  args = list(container.args)
  name = args[args.index("--function_to_execute") + 1]
  for part in container.command:
    if f"def {name}(" in part:
      return part, name
  raise ValueError(f"task {name!r} embeds no Python source")


def console_filter() -> Callable[[str], Optional[str]]:
  """Maps each output line to what the console shows (None: nothing).

  Hidden: TensorFlow's startup lines, and INFO/DEBUG records of the KFP
  executor's logging (which makes every library log at INFO, e.g. the
  executor input or TFMA's whole eval config) with their continuation
  lines (indented, blank, or opening or closing a bracket). WARNING and
  above stay, without the KFP prefix; the log file keeps everything.
  """
  state = {"hiding": False}

  def show(line: str) -> Optional[str]:
    line = line.rstrip("\n")
    record = _KFP_RECORD.match(line)
    if record:
      state["hiding"] = record.group(1) in ("INFO", "DEBUG")
      return None if state["hiding"] else (
          f"{record.group(1)}: {line[record.end():]}")
    stripped = line.strip()
    if state["hiding"] and (not stripped or line[0].isspace() or
                            stripped[0] in "}])" or stripped[-1] in "{[("):
      return None  # a continuation: JSON, a proto's text format, ...
    state["hiding"] = False
    if _TF_STARTUP.match(line) or not stripped:
      return None
    return line

  return show


def parse_error(output: str) -> tuple[Optional[str], Optional[str]]:
  """("Type: message", traceback) of the last Python traceback in `output`."""
  start = output.rfind(_TRACEBACK)
  if start < 0:
    return None, None
  tb = output[start:].rstrip()
  lines = tb.splitlines()[1:]
  for i, line in enumerate(lines):
    if line and not line[0].isspace():
      head, _, message = line.partition(": ")
      message = "\n".join([message] + lines[i + 1:]).strip()
      kind = head.rpartition(".")[2]
      return (f"{kind}: {message}" if message else kind), tb
  return None, tb


HEARTBEAT_SECONDS = 30.0
# A child line that says what the step is doing, for the heartbeat only.
STATUS_PREFIX = "mtrec-status: "


def elapsed(seconds: float) -> str:
  """45s, 1m30s, 1h02m05s: short enough for a progress line."""
  minutes, secs = divmod(int(seconds), 60)
  hours, minutes = divmod(minutes, 60)
  if hours:
    return f"{hours}h{minutes:02d}m{secs:02d}s"
  return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class Heartbeat:
  """Echoes a line for a step that has shown nothing for `interval_s`.

  Why: ExampleGen, Transform and the Evaluator run Beam for minutes on real
  data without a console line, which reads as a hang. Output resets the
  timer, so a step that talks (the trainer's progress lines) is not
  interrupted; a quiet one gets `... Transform still running, 1m30s elapsed
  (what)` every interval. What it is doing: the child's last
  `mtrec-status: <text>` line where it prints one, else the last line the
  console showed. Used as a context manager: a daemon thread beats until
  the step ends; interval_s <= 0 starts none.
  """

  def __init__(self, step: str, echo: Callable[[str], None],
               interval_s: float = HEARTBEAT_SECONDS,
               clock: Callable[[], float] = time.monotonic):
    self.step = step
    self.interval_s = interval_s
    self._echo = echo
    self._clock = clock
    self._lock = threading.Lock()  # the reader and the beating thread
    self._started = self._quiet_since = clock()
    self._status: Optional[str] = None
    self._last_output: Optional[str] = None
    self._stop = threading.Event()
    self._thread: Optional[threading.Thread] = None

  def output(self, shown: str) -> None:
    """A line the console showed: the step is not quiet."""
    with self._lock:
      self._quiet_since = self._clock()
      if shown.strip():
        self._last_output = shown.strip()

  def status(self, text: str) -> None:
    """What the step says it is doing (a `mtrec-status:` line)."""
    with self._lock:
      self._status = text.strip() or None

  def due(self) -> Optional[str]:
    """The heartbeat line if the step has been quiet for an interval."""
    with self._lock:
      now = self._clock()
      if now - self._quiet_since < self.interval_s:
        return None
      self._quiet_since = now
      doing = self._status or (self._last_output and
                               f"last output: {self._last_output[:80]}")
      return (f"... {self.step} still running, "
              f"{elapsed(now - self._started)} elapsed"
              + (f" ({doing})" if doing else ""))

  def _seconds_to_next(self) -> float:
    with self._lock:
      return self._quiet_since + self.interval_s - self._clock()

  def _beat(self) -> None:
    while not self._stop.wait(max(self._seconds_to_next(), 0.05)):
      line = self.due()
      if line:
        self._echo(line)

  def __enter__(self) -> "Heartbeat":
    if self.interval_s > 0:
      self._thread = threading.Thread(
          target=self._beat, name=f"heartbeat-{self.step}", daemon=True)
      self._thread.start()
    return self

  def __exit__(self, *exc_info: Any) -> None:
    self._stop.set()
    if self._thread is not None:
      self._thread.join()


def launch(component_spec: pipeline_spec_pb2.ComponentSpec,
           container: Any, arguments: dict[str, Any], task_root: str,
           task_name: str, run_id: str, pipeline_root: str, log_dir: str,
           echo: Callable[[str], None],
           heartbeat_s: float = HEARTBEAT_SECONDS) -> TaskResult:
  """Runs the task; its outputs land at output_uris(component_spec, ...).

  `log_dir` receives <task_name>.log (the child's whole output) and
  <task_name>.executor_output.json (what the KFP executor reported).
  `heartbeat_s`: after that long without a console line, a Heartbeat line,
  and again every as long (<= 0: never).
  """
  start = time.time()
  log_path = os.path.join(log_dir, f"{task_name}.log")
  executor_input, command = kfp_local.task_command(
      component_spec, container, arguments, task_root,
      output_uris(component_spec, task_root),
      os.path.join(log_dir, f"{task_name}.executor_output.json"), run_id,
      task_name, pipeline_root)
  env = dict(os.environ)
  env.update({e.name: e.value for e in container.env})
  # The child imports this checkout, whether or not it is pip-installed.
  env["PYTHONPATH"] = os.pathsep.join(
      p for p in (step_deps.PROJECT_ROOT, env.get("PYTHONPATH")) if p)
  env.setdefault("TF_USE_LEGACY_KERAS", "1")
  # A multi-worker Trainer's workers are processes here, not a TFJob.
  env.setdefault(multi_worker.LAUNCHER_ENV, "local")
  env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  env["PYTHONUNBUFFERED"] = "1"
  show = console_filter()
  tail: list[str] = []
  os.makedirs(os.path.dirname(log_path), exist_ok=True)
  with open(log_path, "w") as log, subprocess.Popen(
      command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
      bufsize=1, env=env) as proc, Heartbeat(
          task_name, echo, heartbeat_s) as heartbeat:
    for line in proc.stdout:
      log.write(line)
      tail.append(line)
      del tail[:-400]
      if line.startswith(STATUS_PREFIX):
        heartbeat.status(line[len(STATUS_PREFIX):])
        continue
      shown = show(line)
      if shown is not None:
        heartbeat.output(shown)
        echo(shown)
    returncode = proc.wait()
  seconds = round(time.time() - start, 2)
  if returncode == 0:
    outputs = kfp_local.task_outputs(executor_input, component_spec)
    return TaskResult(True, seconds, outputs)
  error, tb = parse_error("".join(tail))
  if error is None:
    error = (f"killed by signal {-returncode}" if returncode < 0 else
             f"exited with status {returncode}")
    error += f" (log: {log_path})"
  return TaskResult(False, seconds, {}, error, tb)
