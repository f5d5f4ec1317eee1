"""The mtrec model: towers, task heads, training loop and serving export.

TensorFlow Recommenders is built on Keras 2 (tf-keras); TensorFlow 2.21's
default `tf.keras` is Keras 3. The switch must be set before TensorFlow is
first imported, so every entry point imports this package (or sets the
variable) before anything touches TensorFlow.
"""

import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
if "tensorflow" in sys.modules and os.environ["TF_USE_LEGACY_KERAS"] != "1":
  raise ImportError("mtrec's trainer needs TF_USE_LEGACY_KERAS=1 (TFRS runs "
                    "on Keras 2); set it before importing TensorFlow.")
