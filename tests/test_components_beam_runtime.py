"""components.beam_runtime: the runner Beam steps use, unless told."""

from components import beam_runtime


def _options(args):
  return beam_runtime.pipeline_options(args).get_all_options()


def test_the_default_runner_is_the_in_process_fn_api_runner():
  assert _options([])["runner"] == "FnApiRunner"
  assert _options(())["runner"] == "FnApiRunner"


def test_a_configured_runner_is_kept():
  assert _options(["--runner=DataflowRunner"])["runner"] == "DataflowRunner"
  assert _options(["--runner", "FlinkRunner"])["runner"] == "FlinkRunner"


def test_other_arguments_pass_through_and_the_caller_list_is_untouched():
  args = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
  options = _options(args)
  assert options["runner"] == "FnApiRunner"
  assert options["direct_running_mode"] == "multi_processing"
  assert options["direct_num_workers"] == 2
  assert args == ["--direct_running_mode=multi_processing",
                  "--direct_num_workers=2"]
