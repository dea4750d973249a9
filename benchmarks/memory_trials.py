"""Benchmark memory across trials: the RSS of the process that trains, after each trial of one search.

Runs a search with the random tuner on a tiny synthetic dataset: 32 faces
of 32 px, batch 8, 1 epoch per trial, ResNet50 with random weights.

By default it runs `agetune search --max-trials-per-process N` (N is 1, as
in `agetune search`) in a subprocess and reads the resident set size that
each trial's record stores at its end, in the process that trained it. It
also samples the main process (the supervisor) every second. With
`--trials-per-process 0` it runs `tuner.search.run_search` in this process,
the one-process search of agetune before it started fresh processes, and
reads the RSS after each trial's end hook.

The first trials pay one-off allocations (the TensorFlow runtime, kernels,
the dataset cache), so growth is measured from the end of trial 3 to the
last trial.

`--plain-loop MODE` leaves Keras Tuner out. Each round builds the same model
with `AgeHyperModel.build`, then evaluates it ("evaluate"), fits it for one
epoch with validation ("fit") or does nothing more ("build"). It deletes
the model, collects garbage and prints the RSS and how many of the models
are still alive, through weak references.

    .venv/bin/python benchmarks/memory_trials.py --trials 30
    .venv/bin/python benchmarks/memory_trials.py --trials 30 --trials-per-process 0
    .venv/bin/python benchmarks/memory_trials.py --trials 4 --plain-loop fit
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common

SPACE = """
[search]
tuner = "random"
max_trials = {trials}
seed = 0
[data]
image_size = 32
batch_size = 8
[backbone]
weights = "none"
[training]
epochs = 1
# A continuous range, so the random tuner never runs out of new trials.
learning_rate = {{ type = "float", min = 1e-5, max = 1e-2, sampling = "log" }}
"""
#: Trials before growth is measured: the first ones allocate what the process keeps.
SETTLE_TRIALS = 3


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=8,
                        help="trials in the search (default 8, about 5 minutes on 2 cores; the goal is stated for 30)")
    parser.add_argument("--plain-loop", choices=["build", "evaluate", "fit"], default=None,
                        help="instead of a search, repeat build (+ evaluate or fit) of one model, --trials times")
    parser.add_argument("--trials-per-process", type=int, default=1,
                        help="agetune search --max-trials-per-process (default 1); 0 runs the search in this process")
    parser.add_argument("--quick", action="store_true", help="a smoke run of 4 trials")
    parser.add_argument("--json", type=str, default=None, help="also write the results to this JSON file")
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.trials = 4
    if arguments.trials <= SETTLE_TRIALS and not arguments.plain_loop:
        parser.error(f"--trials must be above {SETTLE_TRIALS}: growth is measured after trial {SETTLE_TRIALS}")
    return arguments


def run_plain_loop(mode: str, rounds: int) -> None:
    """Build (and evaluate or fit) one model per round without Keras Tuner, printing RSS and live models."""
    import gc
    import weakref

    import keras
    import keras_tuner
    import numpy as np
    import tensorflow as tf

    from tuner.hypermodel import AgeHyperModel
    from tuner.space import load_space

    space = load_space("baseline").with_overrides({"data.image_size": 32, "backbone.weights": "none"})
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(24, 32, 32, 3), dtype=np.uint8)
    ages = rng.uniform(1, 90, size=24).astype(np.float32)
    dataset = tf.data.Dataset.from_tensor_slices((images, ages)).batch(8)
    models: list[weakref.ref] = []
    for index in range(rounds):
        keras.backend.clear_session()
        model = AgeHyperModel(space, weights_path=None, seed=0).build(keras_tuner.HyperParameters())
        if mode == "evaluate":
            model.evaluate(dataset, verbose=0)
        elif mode == "fit":
            model.fit(dataset, validation_data=dataset, epochs=1, verbose=0)
        models.append(weakref.ref(model))
        del model
        gc.collect()
        alive = sum(reference() is not None for reference in models)
        print(f"  {mode} round {index + 1}: RSS {common.rss_mb():.0f} MiB, models still alive {alive}", flush=True)


def run_in_process(space_path: Path, layout_root: Path, run_dir: Path) -> tuple[list[tuple[str, float, float]], Any]:
    """Run the search in this process; return (trial id, RSS MiB, time) after each trial and the summary."""
    from tuner import search

    samples: list[tuple[str, float, float]] = []
    original_end = search.AgeTuner.on_trial_end

    def on_trial_end(self, trial):
        try:
            return original_end(self, trial)
        finally:
            samples.append((trial.trial_id, common.rss_mb(), time.perf_counter()))
            print(f"  trial {trial.trial_id}: RSS {samples[-1][1]:.0f} MiB", flush=True)

    search.AgeTuner.on_trial_end = on_trial_end
    summary = search.run_search(search.SearchOptions(space=space_path, data=layout_root, run_dir=run_dir, verbose=0,
                                                     mixed_precision="off", xla="off"))
    return samples, summary


def run_in_fresh_processes(space_path: Path, layout_root: Path, run_dir: Path,
                           trials_per_process: int) -> tuple[list[tuple[str, float, float]], float]:
    """Run `agetune search` in a subprocess; return (trial id, RSS MiB, time) per trial and the main process's peak RSS."""
    from tuner.run import RunFolder, read_trial_records

    command = [sys.executable, "-m", "tuner", "search", "--space", str(space_path), "--data", str(layout_root),
               "--run", str(run_dir), "--mixed-precision", "off", "--xla", "off",
               "--max-trials-per-process", str(trials_per_process)]
    process = subprocess.Popen(command, cwd=common.REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    main_peak = 0.0
    # The main process imports TensorFlow but never trains; sampling it shows that it stays flat too.
    while process.poll() is None:
        try:
            main_peak = max(main_peak, common.rss_mb(process.pid))
        except (OSError, RuntimeError):
            # The process ended between poll() and the read of its /proc entry.
            pass
        time.sleep(1.0)
    if process.returncode != 0:
        raise SystemExit(f"agetune search failed with exit code {process.returncode}:\n{process.stderr.read()[-3000:]}")
    records = read_trial_records(RunFolder(run_dir))
    samples = []
    for trial_id in sorted(records, key=lambda name: records[name].get("finished_at", "")):
        record = records[trial_id]
        finished = dt.datetime.fromisoformat(record["finished_at"]).timestamp()
        samples.append((trial_id, float(record["rss_mib"]), finished))
        print(f"  trial {trial_id}: RSS {record['rss_mib']:.0f} MiB in process {record['pid']}", flush=True)
    return samples, main_peak


def main() -> None:
    arguments = parse_arguments()
    load = common.LoadLog()
    facts = common.machine_facts()
    common.print_header("memory across trials", vars(arguments), facts)
    if arguments.plain_loop:
        run_plain_loop(arguments.plain_loop, arguments.trials)
        load.finish()
        for line in load.lines():
            print(line)
        return

    from tuner.synthetic import make_synthetic_faces

    rss_before = common.rss_mb()
    main_peak = None
    workspace = Path(tempfile.mkdtemp(prefix="agetune-bench-memory-"))
    try:
        layout = make_synthetic_faces(workspace / "faces", count=32, image_size=32, seed=0)
        space_path = workspace / "space.toml"
        space_path.write_text(SPACE.format(trials=arguments.trials), encoding="utf-8")
        started = time.perf_counter()
        if arguments.trials_per_process:
            started = time.time()
            samples, main_peak = run_in_fresh_processes(space_path, layout.root, workspace / "run",
                                                        arguments.trials_per_process)
            seconds = time.time() - started
        else:
            samples, _ = run_in_process(space_path, layout.root, workspace / "run")
            seconds = time.perf_counter() - started
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
    load.finish()

    settled = samples[SETTLE_TRIALS - 1][1]
    growth = samples[-1][1] - settled
    later = samples[SETTLE_TRIALS - 1:]
    per_trial = (later[-1][1] - later[0][1]) / (len(later) - 1)
    highest = max(rss for _, rss, _ in samples)
    rows = []
    previous_time = started
    for index, (trial_id, rss, moment) in enumerate(samples):
        rows.append([index + 1, trial_id, rss, rss - settled if index >= SETTLE_TRIALS - 1 else "",
                     moment - previous_time])
        previous_time = moment
    print()
    where = (f"a fresh process every {arguments.trials_per_process} trial(s)" if arguments.trials_per_process
             else "one process")
    print(f"{len(samples)} trials in {where}, {seconds:.0f} s; RSS of this benchmark before the search: "
          f"{rss_before:.0f} MiB")
    print(common.format_table(["#", "trial", "RSS MiB", f"since trial {SETTLE_TRIALS} MiB", "s since previous"],
                              rows))
    print()
    print(f"growth from trial {SETTLE_TRIALS} to trial {len(samples)}: {growth:.0f} MiB "
          f"({per_trial:.1f} MiB per trial; goal: at most 100 MB over 30 trials); highest RSS after a trial: "
          f"{highest:.0f} MiB")
    if main_peak is not None:
        print(f"peak RSS of the main process (the supervisor, which never trains): {main_peak:.0f} MiB")
    for line in load.lines():
        print(line)
    common.write_json(arguments.json, {"arguments": vars(arguments), "machine": facts, "load_start": load.start,
                                       "load_end": load.end, "rss_before_mib": rss_before,
                                       "samples": samples, "growth_mib": growth, "per_trial_mib": per_trial,
                                       "highest_mib": highest, "main_process_peak_mib": main_peak,
                                       "search_seconds": seconds})


if __name__ == "__main__":
    main()
