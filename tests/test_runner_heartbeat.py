"""The local runner's heartbeat: a quiet step still says it is running.

A fake clock for the rules (when a line is due, what it says), then a real
KFP task that sleeps in its own process under the runner, with a short
interval.

No `from __future__ import annotations` here: the component below is a KFP
component, whose annotations KFP reads unevaluated.
"""

import os
import re

from kfp import compiler
from kfp import dsl
import yaml

from pipeline import runner
from pipeline import task_launcher


class _Clock:

  def __init__(self):
    self.now = 100.0

  def __call__(self):
    return self.now


def test_a_line_after_each_quiet_interval_with_what_the_step_does():
  clock, lines = _Clock(), []
  beat = task_launcher.Heartbeat("Transform", lines.append, 30.0, clock)
  clock.now = 129.9
  assert beat.due() is None
  clock.now = 130.0
  assert beat.due() == "... Transform still running, 30s elapsed"
  clock.now = 150.0
  assert beat.due() is None  # 20 s since the last line
  beat.status("analyzing\n")
  clock.now = 190.0
  assert beat.due() == "... Transform still running, 1m30s elapsed (analyzing)"
  assert lines == []  # due() only says; the thread echoes


def test_output_resets_the_timer_and_is_the_fallback_status():
  clock = _Clock()
  beat = task_launcher.Heartbeat("Evaluator", print, 30.0, clock)
  clock.now = 125.0
  beat.output("   WARNING: slices with too few examples  ")
  clock.now = 154.0
  assert beat.due() is None  # 29 s since that line
  clock.now = 100.0 + 3600 + 125.0
  assert beat.due() == ("... Evaluator still running, 1h02m05s elapsed "
                        "(last output: WARNING: slices with too few examples)")


def test_the_thread_beats_while_the_step_is_quiet_and_stops_with_it():
  import time  # pylint: disable=g-import-not-at-top
  lines = []
  with task_launcher.Heartbeat("Trainer", lines.append, 0.05):
    time.sleep(0.5)
  assert lines and all(line == "... Trainer still running, 0s elapsed"
                       for line in lines)
  count = len(lines)
  time.sleep(0.2)
  assert len(lines) == count


def test_interval_zero_starts_no_thread():
  with task_launcher.Heartbeat("Pusher", print, 0) as beat:
    assert beat._thread is None  # pylint: disable=protected-access


def sleepy(seconds: float) -> str:
  import time  # pylint: disable=all
  print("mtrec-status: sleeping", flush=True)
  time.sleep(seconds)
  return "slept"


def test_a_sleeping_task_gets_heartbeats_under_the_runner(tmp_path):
  make = dsl.component(base_image="python:3.11", install_kfp_package=False)
  sleepy_c = make(sleepy)

  @dsl.pipeline(name="sleepy")
  def pipeline(seconds: float = 2.5):
    sleepy_c(seconds=seconds).set_display_name("Sleepy")

  path = str(tmp_path / "sleepy.yaml")
  compiler.Compiler().compile(pipeline, path)
  with open(path) as f:
    spec = yaml.safe_load(f)
  lines: list[str] = []
  result = runner.run_spec(spec, {"seconds": 2.5}, str(tmp_path / "runs"),
                           log=lines.append, use_cache=False,
                           heartbeat_s=0.5)
  assert result.status == "succeeded"
  beats = [line for line in lines if "still running" in line]
  # A line every 0.5 s: before the child's status line (its interpreter
  # starting) without what it does, then with it, 2.5 s asleep.
  for line in beats:
    assert re.fullmatch(
        r"      \.\.\. Sleepy still running, \ds elapsed( \(sleeping\))?",
        line), line
  assert sum(line.endswith("(sleeping)") for line in beats) >= 2, lines
  # The status line is for the heartbeat: in the log file, not the console.
  assert not any("mtrec-status" in line for line in lines)
  with open(os.path.join(result.run_dir, "logs", "Sleepy.log")) as f:
    assert "mtrec-status: sleeping\n" in f.read()
