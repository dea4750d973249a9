"""A tiny finished search, shared by the tests of everything that reads a run folder."""

from __future__ import annotations

from pathlib import Path

from tuner.search import SearchOptions, run_search
from tuner.synthetic import make_synthetic_faces

# Two one-epoch trials of ResNet50 at 32 px on 48 synthetic faces: about a
# minute on 2 CPU cores, almost all of it tracing the training step.
TINY_SPACE = """
[search]
tuner = "random"
max_trials = 2
seed = 7
[data]
image_size = 32
batch_size = 8
[backbone]
weights = "none"
[head]
# After one epoch, BatchNorm's moving averages are still near their start, so a relu output
# can be 0 for every validation photo. Small differences in float rounding decide whether it is.
# Tests that compare estimates need them to vary, so the tiny run's output is linear.
output_activation = "linear"
[training]
epochs = 1
learning_rate = { type = "choice", values = [0.001, 0.0003] }
"""


def make_tiny_run(root: Path) -> Path:
    """Run the tiny search into `root`/run and return the run folder."""
    layout = make_synthetic_faces(root / "faces", count=48, image_size=32, seed=3)
    space_path = root / "tiny.toml"
    space_path.write_text(TINY_SPACE, encoding="utf-8")
    run_dir = root / "run"
    run_search(SearchOptions(space=space_path, data=layout.root, run_dir=run_dir, verbose=0))
    return run_dir
