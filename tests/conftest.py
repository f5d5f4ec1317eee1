"""Test-wide environment: must run before TensorFlow is imported anywhere."""

import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # TFRS needs Keras 2.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Two logical CPU devices let distribution-strategy tests run without a GPU.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SHARED_DATA = os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
