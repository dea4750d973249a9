"""agetune: find the best ResNet50 age regressor for a face photo dataset."""

import os

# TensorFlow prints several lines of C++ start-up notices on import; keep the
# warnings and errors. A user's own setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
