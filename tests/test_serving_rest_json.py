"""TF Serving's REST JSON formats (serving/rest_json.py), without a server.

test_serving_conformance.py sends the same formats over HTTP and checks the
whole answer; the cases here pin conversion details that are easier to see
on the functions themselves.
"""

from __future__ import annotations

import numpy as np

from serving import rest_json


def test_rest_floats_print_like_tf_serving():
  assert rest_json.json_from_outputs(
      {"y": np.array([0.66907406, 3.0, 0.1, 1e6], np.float32)},
      "columnar") == '{"outputs": [0.669074059, 3.0, 0.1, 1e+06]}'
  assert rest_json.json_from_outputs(
      {"x_bytes": np.array([b"\x00\xff"], dtype=object)},
      "row") == '{"predictions": [{"b64": "AP8="}]}'
