"""The runtime the model server runs on: TensorFlow's CPU kernels, the loop.

Two process-level choices, each measured on the `recommend` signature of the
ml-latest-small export (9,742 items) on the 2-core machine this project is
developed on:

* oneDNN's custom TensorFlow ops are off in the model server program unless
  TF_ENABLE_ONEDNN_OPTS says otherwise. TensorFlow's wheels turn them on by
  default on x86; TF Serving's oneDNN build is a separate image
  (Dockerfile.devel-mkl), so the stock server runs TensorFlow's own kernels,
  and for the small matmuls of serving they were measured faster, for a
  one-user and an eight-user `recommend` in a Session. TensorFlow reads the
  variable once, when it loads, so
  `use_server_kernels()` must run before anything imports TensorFlow; the
  program's entry points (`python -m serving.model_server`, `mtrec serve`)
  call it first. A server built inside a process that already imported
  TensorFlow (tests, `mtrec demo`) keeps that process's setting.
* The gRPC server's event loop is uvloop's (libuv in C) rather than
  asyncio's pure-Python selector loop. Every request passes through that one
  thread several times (gRPC's completion events, the handler, the batch's
  results), so the loop's own overhead is paid per request.

End to end the two together are worth less than the kernels alone suggest,
because the server is then bound by the GIL and gRPC's per-call work: a
modest QPS gain for `recommend` under concurrent load, smaller still on a
noisier machine.

The figures behind both choices are in docs/design_measurements.md.
"""

from __future__ import annotations

import asyncio
import os

import uvloop

ONEDNN_VARIABLE = "TF_ENABLE_ONEDNN_OPTS"


def use_server_kernels() -> None:
  """TensorFlow without oneDNN's ops, unless the environment chose already.

  Call before TensorFlow is imported; afterwards it changes nothing.
  """
  os.environ.setdefault(ONEDNN_VARIABLE, "0")


def new_event_loop() -> asyncio.AbstractEventLoop:
  """The event loop a gRPC server (grpc.aio) of this project runs on."""
  return uvloop.new_event_loop()
