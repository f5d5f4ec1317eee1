"""The `mtrec` client commands: recommend, score, explain, metadata, status.

Each is a `*_main(argv) -> exit status` that pipeline/cli.py dispatches to:
`recommend` (top items for a user), `score` (the ranking heads for a user and
given items), `explain` (why an item ranks where it does for a user),
`metadata` (the served version's signatures) and `status` (every version's
state). They parse flags, call the client library
(client.py) and print text tables or JSON; a failed call is reported on
stderr with TF Serving's code and message and turned into an exit status.
Kept apart from the library so a program that only calls a server does not
carry the command-line layer. The library (and through it TensorFlow, seconds
to load) is imported only after the flags parse, so `--help` and a flag
error answer at once; every multi-word flag takes `_` or `-`
(contracts/flags.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Optional

import grpc

from contracts import flags

# TF Serving's default signature (serving/apis.py: DEFAULT_SERVING_SIGNATURE,
# tests/test_serving_client_cli.py checks they agree), spelt out so that
# building the parser does not import TensorFlow.
_DEFAULT_SIGNATURE = "serving_default"


def format_table(rows: list[dict[str, Any]], max_title_chars: int = 48) -> str:
  """Renders rows such as client.recommend()'s as an aligned text table."""
  if not rows:
    return "(no recommendations)"
  columns = list(rows[0])

  def cell(column: str, value: Any) -> str:
    if isinstance(value, float):
      return f"{value:.4f}"
    text = str(value)
    if column == "title" and len(text) > max_title_chars:
      text = text[:max_title_chars - 3] + "..."
    return text

  cells = [[cell(c, row.get(c, "")) for c in columns] for row in rows]
  widths = [max(len(c), *(len(r[j]) for r in cells))
            for j, c in enumerate(columns)]
  # Numbers right-aligned, text left-aligned.
  right = [isinstance(rows[0].get(c), (int, float)) for c in columns]

  def line(values: list[str]) -> str:
    return "  ".join(v.rjust(w) if r else v.ljust(w)
                     for v, w, r in zip(values, widths, right)).rstrip()

  return "\n".join([line(columns), line(["-" * w for w in widths])] +
                   [line(r) for r in cells])


def _fusion_weights(text: str) -> dict[str, float]:
  """`like=2,rating=0` -> {"like": 2.0, "rating": 0.0} (argparse type)."""
  out = {}
  for part in text.split(","):
    task, sep, value = part.partition("=")
    try:
      if not sep or not task.strip():
        raise ValueError
      out[task.strip()] = float(value)
    except ValueError:
      raise argparse.ArgumentTypeError(
          f"{part!r}: expected TASK=WEIGHT, e.g. like=2") from None
  return out


def recommend_main(argv: Optional[list[str]] = None) -> int:
  """`mtrec recommend --user U`: prints a user's recommendations.

  Args:
    argv: arguments without the program name; None reads sys.argv.

  Returns:
    The process exit status: 0, or 1 when the server failed the request.
  """
  parser = flags.FlagParser(
      prog="mtrec recommend",
      description="Ask a running model server for a user's top items.")
  parser.add_argument("--user", required=True, help="The user id.")
  parser.add_argument("--server", default="localhost:8500",
                      help="host:port of the gRPC model server.")
  parser.add_argument("--model_name", default="mtrec",
                      help="The model name the server serves.")
  parser.add_argument("--timeout", type=float, default=10.0,
                      help="Seconds to wait for the answer.")
  parser.add_argument("--contributions", action="store_true",
                      help="Also print each fused task's contribution to "
                      "the score (contribution_<task>; they add up to it).")
  parser.add_argument("--fusion", type=_fusion_weights, default=None,
                      metavar="TASK=W,...",
                      help="Fusion weights instead of the model's for the "
                      "tasks named, e.g. like=2,rating=0 (the model's "
                      "`recommend_weighted` signature answers).")
  parser.add_argument("--k", type=int, default=10,
                      help="How many items, with --fusion.")
  args = parser.parse_args(argv)
  from serving import client as client_lib  # pylint: disable=g-import-not-at-top
  with client_lib.PredictionClient(args.server, timeout=args.timeout) as client:
    try:
      rows = client_lib.recommend(client, args.model_name, args.user,
                                  weights=args.fusion, k=args.k)
      if not args.contributions:
        rows = [{k: v for k, v in row.items()
                 if not k.startswith("contribution_")} for row in rows]
    except grpc.RpcError as e:
      print(f"mtrec recommend: {args.server} failed the request:"
            f" {e.code().name}: {e.details()}", file=sys.stderr)
      return 1
    except ValueError as e:
      print(f"mtrec recommend: {e}", file=sys.stderr)
      return 1
  print(f"Recommendations for user {args.user} ({args.model_name} at"
        f" {args.server}):")
  print(format_table(rows))
  return 0


def _client_parser(prog: str, description: str) -> flags.FlagParser:
  parser = flags.FlagParser(prog=prog, description=description)
  parser.add_argument("--server", default="localhost:8500",
                      help="host:port of the gRPC model server.")
  parser.add_argument("--model_name", default="mtrec",
                      help="The model name the server serves.")
  parser.add_argument("--timeout", type=float, default=10.0,
                      help="Seconds to wait for the answer.")
  return parser


def _report_rpc_error(command: str, server: str, error: grpc.RpcError) -> int:
  print(f"mtrec {command}: {server} failed the request:"
        f" {error.code().name}: {error.details()}", file=sys.stderr)
  return 1


def score_main(argv: Optional[list[str]] = None) -> int:
  """`mtrec score --user U --items I1,I2,...`: prints the heads per item.

  Args:
    argv: arguments without the program name; None reads sys.argv.

  Returns:
    The process exit status: 0, or 1 when the server failed the request.
  """
  parser = _client_parser("mtrec score",
                          "Score items for a user with a running server.")
  parser.add_argument("--user", required=True, help="The user id.")
  parser.add_argument("--items", required=True,
                      help="Comma-separated item ids to score.")
  parser.add_argument("--signature_name",
                      default=_DEFAULT_SIGNATURE,
                      help="A signature taking user_id and item_id.")
  args = parser.parse_args(argv)
  items = [i.strip() for i in args.items.split(",") if i.strip()]
  if not items:
    parser.error("--items names no item")
  from serving import client as client_lib  # pylint: disable=g-import-not-at-top
  with client_lib.PredictionClient(args.server, timeout=args.timeout) as client:
    try:
      rows = client_lib.score(client, args.model_name, args.user, items,
                              args.signature_name)
    except grpc.RpcError as e:
      return _report_rpc_error("score", args.server, e)
  print(f"Scores for user {args.user} ({args.model_name} at {args.server}):")
  print(format_table(rows))
  return 0


def format_explanation(user: str, item: str,
                       answer: dict[str, Any]) -> str:
  """The `explain` signature's answer (serving.client.explain) as text."""
  def number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)

  def listed(names: list, values: list, percent: bool = False) -> str:
    if not names:
      return "(none)"
    return ", ".join(f"{n} ({v:.0%})" if percent else f"{n} ({v:.3f})"
                     for n, v in zip(names, values))

  terms = sorted(k for k in answer if k.startswith("contribution_"))
  lines = [
      f"Item {item} for user {user}: score {number(answer['score'])}"
      f" (rank {answer['rank']} among the user's candidates)",
      "  = " + " + ".join(f"{k[len('contribution_'):]} "
                          f"{number(answer[k])}" for k in terms)]
  heads = [k for k in answer if k not in terms and not k.startswith("gate_")
           and isinstance(answer[k], float) and k not in (
               "score", "item_content_share")]
  lines.append("  predictions: " + ", ".join(
      f"{k} {number(answer[k])}" for k in sorted(heads)))
  lines.append("  user: " + ("known" if answer["user_known"] else
                             "unknown to the model (no profile or history)"))
  lines.append("  because of history items: " + listed(
      answer["history_item_ids"], answer["history_similarities"]))
  lines.append("  interests: " + listed(
      answer["interest_categories"], answer["interest_shares"], True))
  share = answer["item_content_share"]
  lines.append("  item: " + (
      "trained on" if answer["item_known"] else
      "cold: the model has no interactions with it") + (
          "" if share < 0 else f"; {share:.0%} of its embedding from its "
          "content, the rest from its id"))
  for key in sorted(k for k in answer if k.startswith("gate_")):
    lines.append(f"  experts {key[len('gate_'):]} relied on: " + ", ".join(
        f"{w:.2f}" for w in answer[key]))
  return "\n".join(lines)


def explain_main(argv: Optional[list[str]] = None) -> int:
  """`mtrec explain --user U --item I`: why the model ranks I for U.

  Args:
    argv: arguments without the program name; None reads sys.argv.

  Returns:
    The process exit status: 0, or 1 when the server failed the request.
  """
  parser = _client_parser(
      "mtrec explain", "Ask a running server why it ranks an item for a "
      "user where it does (the model's `explain` signature).")
  parser.add_argument("--user", required=True, help="The user id.")
  parser.add_argument("--item", required=True, help="The item id.")
  parser.add_argument("--json", action="store_true",
                      help="Print JSON instead of text.")
  args = parser.parse_args(argv)
  from serving import client as client_lib  # pylint: disable=g-import-not-at-top
  with client_lib.PredictionClient(args.server, timeout=args.timeout) as client:
    try:
      answer = client_lib.explain(client, args.model_name, args.user,
                                  args.item)
    except grpc.RpcError as e:
      return _report_rpc_error("explain", args.server, e)
  if args.json:
    print(json.dumps(answer, indent=1, sort_keys=True))
  else:
    print(format_explanation(args.user, args.item, answer))
  return 0


def _tensor_info_text(info) -> str:
  from serving import tensors  # pylint: disable=g-import-not-at-top
  dims = ("unknown rank" if info.tensor_shape.unknown_rank else
          "[" + ", ".join("?" if d.size < 0 else str(d.size)
                          for d in info.tensor_shape.dim) + "]")
  return f"{tensors.data_type_name(info.dtype)} {dims}"


def metadata_main(argv: Optional[list[str]] = None) -> int:
  """`mtrec metadata`: prints the served version and its signatures.

  Args:
    argv: arguments without the program name; None reads sys.argv.

  Returns:
    The process exit status: 0, or 1 when the server failed the request.
  """
  parser = _client_parser("mtrec metadata",
                          "Show a served model's version and signatures.")
  parser.add_argument("--version", type=int, default=None,
                      help="A specific loaded version (default: latest).")
  parser.add_argument("--json", action="store_true",
                      help="Print JSON instead of text.")
  args = parser.parse_args(argv)
  from serving import client as client_lib  # pylint: disable=g-import-not-at-top
  with client_lib.PredictionClient(args.server, timeout=args.timeout) as client:
    try:
      metadata = client.metadata(args.model_name, args.version)
    except grpc.RpcError as e:
      return _report_rpc_error("metadata", args.server, e)
  if args.json:
    print(json.dumps({
        "name": metadata.name,
        "version": metadata.version,
        "signatures": {
            name: {
                "method_name": sig.method_name,
                "inputs": {k: _tensor_info_text(v)
                           for k, v in sorted(sig.inputs.items())},
                "outputs": {k: _tensor_info_text(v)
                            for k, v in sorted(sig.outputs.items())},
            } for name, sig in sorted(metadata.signature_defs.items())
        }
    }, indent=2))
    return 0
  print(f"model {metadata.name} version {metadata.version}")
  for name, sig in sorted(metadata.signature_defs.items()):
    print(f"signature {name} ({sig.method_name})")
    for alias, info in sorted(sig.inputs.items()):
      print(f"  input  {alias}: {_tensor_info_text(info)}")
    for alias, info in sorted(sig.outputs.items()):
      print(f"  output {alias}: {_tensor_info_text(info)}")
  return 0


def status_main(argv: Optional[list[str]] = None) -> int:
  """`mtrec status`: prints the state of every version the server knows.

  Args:
    argv: arguments without the program name; None reads sys.argv.

  Returns:
    The process exit status: 0 when a version is AVAILABLE, 3 when none is
    (a script can wait on it), 1 when the server failed the request.
  """
  parser = _client_parser("mtrec status",
                          "Show the state of every version of a model.")
  args = parser.parse_args(argv)
  # pylint: disable=g-import-not-at-top
  from serving import apis
  from serving import client as client_lib
  from serving import status as status_lib
  # pylint: enable=g-import-not-at-top
  with client_lib.PredictionClient(args.server, timeout=args.timeout) as client:
    try:
      statuses = client._get_model_status(  # pylint: disable=protected-access
          args.model_name, args.timeout)
    except grpc.RpcError as e:
      return _report_rpc_error("status", args.server, e)
  rows = []
  for version_status in statuses:
    error = version_status.status
    rows.append({
        "version": version_status.version,
        "state": apis.ModelVersionStatus.State.Name(version_status.state),
        "error": (f"{status_lib.grpc_code(error.error_code).name}:"
                  f" {error.error_message}" if error.error_code else ""),
    })
  print(f"{args.model_name} at {args.server}:")
  print(format_table(rows, max_title_chars=200))
  available = any(r["state"] == "AVAILABLE" for r in rows)
  return 0 if available else 3


if __name__ == "__main__":
  sys.exit(recommend_main())
