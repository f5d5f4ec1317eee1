"""Artifacts: directories with a metadata.json, published atomically.

A component writes its output into a hidden temporary sibling directory and
renames it into place only after everything, metadata.json last, is written.
A reader (the next step, a cache lookup, the model server) therefore either
sees a complete artifact or none at all: a crash mid-write leaves only a
`.tmp-*` directory that nothing treats as an artifact.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from typing import Any, Iterator, Mapping, Optional

METADATA_FILE = "metadata.json"
# Split names: the Examples artifact's and the Catalog artifact's.
TRAIN = "train"
VALIDATION = "validation"  # training-time choices read it, never eval
EVAL = "eval"
ITEMS = "items"
USERS = "users"


def split_dir(artifact_uri: str, split: str) -> str:
  """TFX's layout: one `Split-<name>` subdirectory per split."""
  return os.path.join(artifact_uri, f"Split-{split}")


def split_names(artifact_uri: str) -> list[str]:
  """The splits an artifact holds (its `Split-<name>` directories), sorted."""
  return sorted(d[len("Split-"):] for d in os.listdir(artifact_uri)
                if d.startswith("Split-"))


def split_pattern(artifact_uri: str, split: str) -> str:
  return os.path.join(split_dir(artifact_uri, split), "*")


def split_files(artifact_uri: str, split: str) -> list[str]:
  """The data files of one split, sorted (hidden files excluded)."""
  d = split_dir(artifact_uri, split)
  return sorted(os.path.join(d, f) for f in os.listdir(d)
                if not f.startswith("."))


def fingerprint(path: str) -> str:
  """A content hash of a file or directory tree (names and bytes)."""
  h = hashlib.sha256()
  if os.path.isfile(path):
    paths = [path]
    root = os.path.dirname(path)
  else:
    root = path
    paths = []
    for dirpath, dirnames, filenames in os.walk(path):
      dirnames.sort()
      paths.extend(os.path.join(dirpath, f) for f in sorted(filenames))
  for p in paths:
    rel = os.path.relpath(p, root)
    if rel == METADATA_FILE:
      continue  # metadata holds created-at times: not content
    h.update(rel.encode() + b"\0")
    with open(p, "rb") as f:
      for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
  return h.hexdigest()


def read_metadata(artifact_uri: str) -> dict[str, Any]:
  path = os.path.join(artifact_uri, METADATA_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(
        f"{artifact_uri} is not a complete artifact (no {METADATA_FILE})")
  with open(path) as f:
    loaded: dict[str, Any] = json.load(f)
  return loaded


class ArtifactWriter:
  """Collects what goes into metadata.json while a component writes."""

  def __init__(self, tmp_uri: str, final_uri: str):
    self.uri = tmp_uri  # write here
    self.final_uri = final_uri
    self.summary: dict[str, Any] = {}


@contextlib.contextmanager
def write_artifact(
    final_uri: str,
    artifact_type: str,
    producer: str,
    run_id: str,
    parameters: Optional[Mapping[str, Any]] = None,
    inputs: Optional[Mapping[str, str]] = None,
) -> Iterator[ArtifactWriter]:
  """Yields a writer whose `uri` is a private directory to fill.

  On normal exit, metadata.json is written and the directory is renamed to
  `final_uri` (replacing nothing: an existing artifact there is an error).
  On an exception the temporary directory is removed and nothing appears.

  Args:
    final_uri: where the artifact becomes visible.
    artifact_type: e.g. "Examples", "TransformGraph", "Model".
    producer: the component name.
    run_id: the pipeline run.
    parameters: the component parameters that shaped this output.
    inputs: input name -> artifact uri; their fingerprints are recorded.
  """
  parent = os.path.dirname(os.path.abspath(final_uri))
  os.makedirs(parent, exist_ok=True)
  if os.path.exists(final_uri):
    raise FileExistsError(f"artifact already exists: {final_uri}")
  tmp_uri = os.path.join(
      parent, f".tmp-{os.path.basename(final_uri)}-{uuid.uuid4().hex[:8]}")
  os.makedirs(tmp_uri)
  writer = ArtifactWriter(tmp_uri, final_uri)
  try:
    yield writer
    input_records = {}
    for name, uri in (inputs or {}).items():
      # An artifact's recorded fingerprint; a plain directory (a served
      # SavedModel version) is hashed.
      has_metadata = os.path.exists(os.path.join(uri, METADATA_FILE))
      input_records[name] = {
          "uri": os.path.abspath(uri),
          "fingerprint": (read_metadata(uri).get("fingerprint")
                          if has_metadata else fingerprint(uri))}
    metadata = {
        "artifact_type": artifact_type,
        "producer": producer,
        "run_id": run_id,
        "uri": os.path.abspath(final_uri),
        "inputs": input_records,
        "parameters": dict(parameters or {}),
        "summary": writer.summary,
        "fingerprint": fingerprint(tmp_uri),
        "created_at": datetime.datetime.now(
            datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    write_json_atomic(os.path.join(tmp_uri, METADATA_FILE), metadata)
    os.rename(tmp_uri, final_uri)
  except BaseException:
    shutil.rmtree(tmp_uri, ignore_errors=True)
    raise


@contextlib.contextmanager
def scratch_dir(next_to: str) -> Iterator[str]:
  """A private working directory beside an artifact-to-be, removed after.

  Beside (same file system), so finished outputs can be renamed, not copied,
  into the artifact; hidden, so nothing mistakes it for an artifact.
  """
  parent = os.path.dirname(os.path.abspath(next_to))
  os.makedirs(parent, exist_ok=True)
  path = tempfile.mkdtemp(prefix=".scratch-", dir=parent)
  try:
    yield path
  finally:
    shutil.rmtree(path, ignore_errors=True)


def write_json_atomic(path: str, value: Any) -> None:
  """Writes JSON so that readers never see a half-written file."""
  tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
  with open(tmp, "w") as f:
    json.dump(value, f, indent=2, sort_keys=True, default=str)
    f.write("\n")
  os.replace(tmp, path)
