"""Benchmark the fixed cost of a trial: seconds from its start to its first training step done.

Runs a real `tuner.search.run_search` (random tuner, the `baseline` space at
64 px with random weights, 3 epochs) on a sample of the real face photos and
records, with a Keras callback and wrappers around the tuner's hooks:

- build: `AgeHyperModel.build` (model, compile, optimizer slots);
- to first step: from the trial's start to the end of its first training
  step. It includes the build, the tracing of the training step and the
  dataset's first batch. Because the shuffle buffer covers the whole
  training set, that batch waits for every photo of the first epoch to be
  decoded;
- the steady step time (median step of epochs 2 and later);
- the first validation pass (it traces the test step) against later ones.

Overhead is the time to the first step done minus one steady step, as a
share of the whole trial.

    .venv/bin/python benchmarks/trial_overhead.py
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import common

#: (event, trial id, time.perf_counter()) in the order they happened. A
#: module-level list, because Keras Tuner deep-copies callbacks for each fit.
EVENTS: list[tuple[str, str | None, float]] = []
CURRENT_TRIAL: list[str | None] = [None]


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image-size", type=int, default=64, help="input size in pixels (default 64)")
    parser.add_argument("--photos", type=int, default=1024, help="real photos in the search (default 1024)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per trial (default 3)")
    parser.add_argument("--trials", type=int, default=1,
                        help="trials in the search (default 1); a second one shows whether tracing repeats")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 256 photos, 2 epochs, 1 trial")
    parser.add_argument("--faces", type=str, default=str(common.FACES_ROOT), help="folder of the face dataset")
    parser.add_argument("--json", type=str, default=None, help="also write the results to this JSON file")
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.photos, arguments.epochs, arguments.trials = min(arguments.photos, 256), 2, 1
    if arguments.epochs < 2:
        parser.error("--epochs must be at least 2, so that a steady epoch exists")
    return arguments


def space_toml(image_size: int, epochs: int, trials: int) -> str:
    """Return the baseline space as TOML with the benchmark's overrides, every value fixed."""
    from tuner.space import load_space

    # A searchable learning rate lets a random search draw more than one trial.
    overrides = {"data.image_size": image_size, "backbone.weights": "none", "training.epochs": epochs,
                 "search.tuner": "random", "search.max_trials": trials}
    document = load_space("baseline").with_overrides(overrides).to_document()
    if trials > 1:
        document["training"]["learning_rate"] = {"type": "choice", "values": [1e-4, 3e-4, 1e-3, 3e-3][:trials]}
    lines = []
    for section, table in document.items():
        lines.append(f"[{section}]")
        for key, value in table.items():
            if isinstance(value, dict):
                fields = ", ".join(f"{name} = {json.dumps(item)}" for name, item in value.items())
                lines.append(f"{key} = {{ {fields} }}")
            else:
                lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


def install_probes() -> None:
    """Wrap the tuner's hooks and the model build so that each records an event with its time."""
    import keras

    from tuner import search
    from tuner.hypermodel import AgeHyperModel

    def record(name: str) -> None:
        EVENTS.append((name, CURRENT_TRIAL[0], time.perf_counter()))

    original_begin = search.AgeTuner.on_trial_begin
    original_end = search.AgeTuner.on_trial_end
    original_build = AgeHyperModel.build
    original_callbacks = search.callbacks_for
    original_prepare = search.prepare_search

    def on_trial_begin(self, trial):
        CURRENT_TRIAL[0] = trial.trial_id
        record("trial_begin")
        return original_begin(self, trial)

    def on_trial_end(self, trial):
        try:
            return original_end(self, trial)
        finally:
            record("trial_end")
            CURRENT_TRIAL[0] = None

    def build(self, hp):
        record("build_begin")
        model = original_build(self, hp)
        record("build_end")
        return model

    def prepare_search(options):
        record("prepare_begin")
        prepared = original_prepare(options)
        record("prepare_end")
        return prepared

    class Probe(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            record("fit_begin")

        def on_epoch_begin(self, epoch, logs=None):
            record(f"epoch_begin {epoch}")

        def on_train_batch_end(self, batch, logs=None):
            record("step_end")

        def on_test_begin(self, logs=None):
            record("test_begin")

        def on_test_end(self, logs=None):
            record("test_end")

        def on_epoch_end(self, epoch, logs=None):
            record(f"epoch_end {epoch}")

    search.AgeTuner.on_trial_begin = on_trial_begin
    search.AgeTuner.on_trial_end = on_trial_end
    AgeHyperModel.build = build
    search.callbacks_for = lambda space: original_callbacks(space) + [Probe()]
    search.prepare_search = prepare_search


def analyse_trial(trial_id: str) -> dict[str, Any]:
    """Turn one trial's events into the breakdown of its time."""
    events = [(name, moment) for name, trial, moment in EVENTS if trial == trial_id]
    first = {}
    for name, moment in events:
        first.setdefault(name, moment)
    begin, end = first["trial_begin"], [moment for name, moment in events if name == "trial_end"][-1]

    # Steps per epoch, from the epoch markers.
    steps_by_epoch: dict[int, list[float]] = defaultdict(list)
    epoch = -1
    epoch_seconds: dict[int, float] = {}
    epoch_started = 0.0
    for name, moment in events:
        if name.startswith("epoch_begin"):
            epoch = int(name.split()[1])
            epoch_started = moment
            steps_by_epoch[epoch].append(moment)
        elif name == "step_end":
            steps_by_epoch[epoch].append(moment)
        elif name.startswith("epoch_end"):
            epoch_seconds[epoch] = moment - epoch_started
    steady_steps = []
    for epoch_number, moments in steps_by_epoch.items():
        # The interval from the epoch's start to its first step includes fetching the first batch.
        if epoch_number >= 1:
            steady_steps += [later - earlier for earlier, later in zip(moments[1:], moments[2:])]
    steady_step = common.median(steady_steps)

    tests = [moment for name, moment in events if name in ("test_begin", "test_end")]
    validation = [later - earlier for earlier, later in zip(tests[0::2], tests[1::2])]
    first_step = first["step_end"]
    total = end - begin
    overhead = first_step - begin - steady_step
    return {
        "trial": trial_id,
        "total_seconds": total,
        "build_seconds": first["build_end"] - first["build_begin"],
        "build_to_fit_seconds": first["fit_begin"] - first["build_end"],
        "fit_to_first_step_seconds": first_step - first["fit_begin"],
        "to_first_step_seconds": first_step - begin,
        "steady_step_seconds": steady_step,
        "steps_per_epoch": len(steps_by_epoch[0]) - 1,
        "epoch_seconds": [epoch_seconds[key] for key in sorted(epoch_seconds)],
        "validation_seconds": validation,
        "overhead_seconds": overhead,
        "overhead_share": overhead / total,
        # The first validation pass traces the test step: its extra time is overhead too.
        "validation_trace_seconds": validation[0] - common.median(validation[1:]) if len(validation) > 1 else 0.0,
    }


def main() -> None:
    arguments = parse_arguments()
    load = common.LoadLog()
    facts = common.machine_facts()
    common.print_header("trial overhead", vars(arguments), facts)

    from tuner.search import SearchOptions
    import tuner.search as search

    install_probes()
    workspace = Path(tempfile.mkdtemp(prefix="agetune-bench-trial-"))
    try:
        space_path = workspace / "space.toml"
        space_path.write_text(space_toml(arguments.image_size, arguments.epochs, arguments.trials), encoding="utf-8")
        options = SearchOptions(space=space_path, data=Path(arguments.faces), run_dir=workspace / "run",
                                limit=arguments.photos, verbose=0, mixed_precision="off", xla="off")
        started = time.perf_counter()
        summary = search.run_search(options)
        search_seconds = time.perf_counter() - started
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
    load.finish()

    trial_ids = sorted({trial for _, trial, _ in EVENTS if trial is not None})
    results = [analyse_trial(trial_id) for trial_id in trial_ids]
    moments = {name: moment for name, _, moment in reversed(EVENTS)}  # the first moment of each event
    prepare_seconds = moments["prepare_end"] - moments["prepare_begin"]
    # Keras Tuner builds the model once before the first trial to declare its hyperparameters.
    setup_seconds = moments["trial_begin"] - moments["prepare_end"]
    last_trial_end = max(moment for name, _, moment in EVENTS if name == "trial_end")
    finish_seconds = started + search_seconds - last_trial_end
    builds_outside = sum(1 for name, trial, _ in EVENTS if name == "build_begin" and trial is None)

    print()
    print(f"Search: {summary.trials} trials of {arguments.epochs} epochs, ResNet50 at {arguments.image_size} px, "
          f"{arguments.photos} photos; {search_seconds:.0f} s in all")
    print(f"  before the trials: {prepare_seconds:.1f} s preparing (checking the dataset, splitting), "
          f"{setup_seconds:.1f} s building the tuner ({builds_outside} model builds outside trials)")
    print(f"  after the trials: {finish_seconds:.1f} s rebuilding, loading and saving the best model")
    headers = ["trial", "total s", "build s", "build to fit s", "fit to first step s", "to first step s",
               "steady step s", "overhead s", "overhead share", "validation trace s"]
    rows = [[r["trial"], r["total_seconds"], r["build_seconds"], r["build_to_fit_seconds"],
             r["fit_to_first_step_seconds"], r["to_first_step_seconds"], r["steady_step_seconds"],
             r["overhead_seconds"], f"{100 * r['overhead_share']:.1f}%", r["validation_trace_seconds"]]
            for r in results]
    print(common.format_table(headers, rows))
    print()
    print(common.format_table(["trial", "steps per epoch", "epoch seconds", "validation seconds"],
                              [[r["trial"], r["steps_per_epoch"], " ".join(f"{s:.1f}" for s in r["epoch_seconds"]),
                                " ".join(f"{s:.1f}" for s in r["validation_seconds"])] for r in results]))
    print()
    for line in load.lines():
        print(line)
    common.write_json(arguments.json, {"arguments": vars(arguments), "machine": facts, "load_start": load.start,
                                       "load_end": load.end, "search_seconds": search_seconds,
                                       "prepare_seconds": prepare_seconds, "setup_seconds": setup_seconds,
                                       "finish_seconds": finish_seconds, "builds_outside_trials": builds_outside,
                                       "trials": results})


if __name__ == "__main__":
    main()
