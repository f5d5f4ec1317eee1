"""The benchmark suite (issue 7): `python -m benchmarks.suite --size full`.

protocol1 (the TFRS tutorial's protocol), protocol2 (temporal split and
throughput), scale (ExampleGen + Transform on Beam's multi-process runner),
report (docs/benchmarks.md), common (configs, steps, splits, machine).
"""
