"""The search: Keras Tuner over the ResNet50 HyperModel, in a run folder that survives interruption.

`run_search` validates everything first (space, dataset, weights, run folder),
then lets Keras Tuner propose trials. Each finished trial leaves a record in
`trials/<id>.json`, a fresh `trials.csv` and one log line. Running the same
command again resumes: Keras Tuner reloads its oracle and reruns the trial
that was in flight, because every state file is written atomically and a
half-written one is never read.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import gc
import io
import json
import logging
import os
import platform
import resource
import shutil
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import keras_tuner
import pandas as pd
import tensorflow as tf

from tuner import __version__
from tuner.data import (DatasetLayout, check_split_photos, load_dataset, load_split, make_dataset, save_split,
                        split_dataset)
from tuner.errors import AgetuneError, RunFolderError
from tuner.hypermodel import AgeHyperModel, resolve_weights
from tuner.logs import attach_log_file
# SearchOptions and default_run_dir are imported from here by callers too.
from tuner.options import SearchOptions, check_switch, config_document, default_run_dir  # noqa: F401
from tuner.run import (RunFolder, atomic_write_json, atomic_write_text, format_duration, run_folder_action,
                       select_best_trial, write_trials_csv)
from tuner.space import SearchSpace, load_space, parse_space

log = logging.getLogger(__name__)

# A checkpoint of Keras Tuner holds the optimizer's slots as well; loading it
# into a freshly compiled model (the next Hyperband round, the best model)
# restores every weight but not the empty optimizer, and Keras warns each time.
warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")


@dataclass
class PreparedSearch:
    """A validated search, ready for Keras Tuner: space, run folder, data split and weights."""

    space: SearchSpace
    run: RunFolder
    split: pd.DataFrame
    weights_path: str | None
    config: dict[str, Any]


# Keras Tuner writes its state with a plain open-and-write, so a search killed
# in the middle of one would leave JSON that the next run cannot reload. These
# oracles write to a temporary file and rename it into place instead.
class _AtomicOracleMixin:
    def save(self) -> None:
        atomic_write_text(Path(self._get_oracle_fname()), json.dumps(self.get_state()))

    def _save_trial(self, trial: keras_tuner.engine.trial.Trial) -> None:
        path = Path(self._get_trial_dir(trial.trial_id)) / "trial.json"
        atomic_write_text(path, json.dumps(trial.get_state()))

    @keras_tuner.synchronized
    def end_trial(self, trial: keras_tuner.engine.trial.Trial) -> None:
        super().end_trial(trial)
        # Keras Tuner 1.4.8 saves the oracle before it removes the trial from
        # ongoing_trials. A process that stopped now (a trial process that
        # makes way for a fresh one, a kill) would leave the finished trial
        # marked ongoing, and reloading the oracle would run it again.
        self.save()


class HyperbandOracle(_AtomicOracleMixin, keras_tuner.oracles.HyperbandOracle):
    """Keras Tuner's Hyperband oracle with atomic state files."""


class RandomSearchOracle(_AtomicOracleMixin, keras_tuner.oracles.RandomSearchOracle):
    """Keras Tuner's random search oracle with atomic state files."""


class BayesianOptimizationOracle(_AtomicOracleMixin, keras_tuner.oracles.BayesianOptimizationOracle):
    """Keras Tuner's Bayesian optimisation oracle with atomic state files."""


def build_oracle(space: SearchSpace) -> keras_tuner.Oracle:
    """Return the oracle that the space names, minimising its objective."""
    objective = keras_tuner.Objective(space.setting("search.objective"), direction="min")
    common = {
        "objective": objective,
        "seed": space.setting("search.seed"),
        "max_retries_per_trial": space.setting("search.max_retries_per_trial"),
        "max_consecutive_failed_trials": space.setting("search.max_consecutive_failed_trials"),
    }
    kind = space.setting("search.tuner")
    max_trials = space.setting("search.max_trials")
    if kind == "hyperband":
        oracle = HyperbandOracle(max_epochs=space.setting("search.max_epochs"), factor=space.setting("search.factor"),
                                 hyperband_iterations=space.setting("search.hyperband_iterations"), **common)
        # Keras Tuner's Hyperband takes no trial limit, but its oracle base
        # class stops handing out trials once `max_trials` is reached.
        oracle.max_trials = max_trials or None
        return oracle
    if kind == "bayesian":
        return BayesianOptimizationOracle(max_trials=max_trials, **common)
    return RandomSearchOracle(max_trials=max_trials, **common)


class TrialsPerProcessReached(Exception):
    """This process has run its `max_trials_per_process` trials and should exit for a fresh one."""


class AgeTuner(keras_tuner.Hyperband):
    """A Keras Tuner tuner that keeps agetune's run folder: trial records, trials.csv and one log line per trial.

    It derives from Hyperband for its handling of rounds (resuming a model
    from the previous round's checkpoint), which does nothing for the random
    and Bayesian oracles, whose trials carry no round.

    After `limit_trials_per_process(N)`, `search` raises
    TrialsPerProcessReached once N trials have ended in this process and the
    oracle has handed out the next one (see that method).
    """

    def __init__(self, oracle: keras_tuner.Oracle, hypermodel: AgeHyperModel, run: RunFolder,
                 baseline: dict[str, Any], **kwargs: Any) -> None:
        # Hyperband.__init__ would build its own oracle; the tuner base class takes ours. It prints
        # "Reloading Tuner from ..." on every resume, once per trial in a fresh process each.
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            keras_tuner.Tuner.__init__(self, oracle=oracle, hypermodel=hypermodel, directory=str(run.path),
                                       project_name=run.tuner_dir.name, overwrite=False, **kwargs)
        for line in printed.getvalue().splitlines():
            log.debug("Keras Tuner: %s", line)
        # Keras Tuner reloads the oracle only when this tuner id's own state file exists. A search started
        # under another id (tuner0 in one process, chief in a parallel search) leaves only oracle.json, and
        # a fresh oracle would number its trials from 0 again over the old ones.
        oracle_file = Path(self.oracle._get_oracle_fname()) if not self._is_worker() else None
        if oracle_file is not None and oracle_file.exists() and not Path(self._get_tuner_fname()).exists():
            self.oracle.reload()
        self.run = run
        self.baseline = baseline
        self.search_started = time.monotonic()
        self.trials_in_process = 0
        self._trial_started: dict[str, float] = {}
        self._history: dict[str, list[dict[str, Any]]] = {}

    def save(self) -> None:
        atomic_write_text(Path(self._get_tuner_fname()), json.dumps(self.get_state()))

    def on_search_begin(self) -> None:
        # Keras Tuner prints a table per trial; agetune logs one line instead.
        self.oracle.verbose = 0
        super().on_search_begin()

    def on_trial_begin(self, trial: keras_tuner.engine.trial.Trial) -> None:
        super().on_trial_begin(trial)
        self._trial_started[trial.trial_id] = time.monotonic()
        self._history[trial.trial_id] = []
        log.info("trial %s started on %s (pid %d): %s", trial.trial_id, self.tuner_id, os.getpid(),
                 describe_values(trial.hyperparameters.values, self.baseline))

    def on_epoch_end(self, trial: keras_tuner.engine.trial.Trial, model: keras.Model, epoch: int,
                     logs: dict[str, float] | None = None) -> None:
        super().on_epoch_end(trial, model, epoch, logs=logs)
        entry = {"epoch": epoch + 1, "seconds": time.monotonic() - self._trial_started[trial.trial_id]}
        entry.update({name: float(value) for name, value in (logs or {}).items()})
        self._history[trial.trial_id].append(entry)

    def on_trial_end(self, trial: keras_tuner.engine.trial.Trial) -> None:
        try:
            super().on_trial_end(trial)
        finally:
            # The oracle raises from end_trial when too many trials failed in
            # a row; the trial's record and trials.csv are still written.
            self._record_trial(trial)
        # Keras Tuner clears the Keras session before the next build; collecting
        # here releases this trial's model before the next one allocates.
        gc.collect()
        # Even so, TensorFlow 2.21 with Keras 3.15 keeps about 350 MB per trial
        # (the traced training step's graph outlives the collected model), and
        # only the end of the process returns it: see tuner.trial_process.
        self.trials_in_process += 1

    def limit_trials_per_process(self, limit: int) -> None:
        """Make `search` raise TrialsPerProcessReached when the oracle hands out a trial after `limit` trials ended here.

        The check runs after the oracle returns the next trial, not at the end
        of a trial, so a process whose search is over ends normally instead of
        leaving a fresh process to find that out. The trial handed out stays
        assigned to this tuner id in the oracle's saved state. A one-process
        oracle reloads it as a trial to retry, and a chief hands it again to a
        worker with this id, so the next process trains it.
        """
        create_trial = self.oracle.create_trial

        def create_or_stop(tuner_id: str) -> keras_tuner.engine.trial.Trial:
            trial = create_trial(tuner_id)
            if self.trials_in_process >= limit and trial.status != keras_tuner.engine.trial.TrialStatus.STOPPED:
                raise TrialsPerProcessReached()
            return trial

        self.oracle.create_trial = create_or_stop

    def _record_trial(self, trial: keras_tuner.engine.trial.Trial) -> None:
        seconds = time.monotonic() - self._trial_started.pop(trial.trial_id, time.monotonic())
        values = trial.hyperparameters.values
        finished = dt.datetime.now(dt.UTC)
        record = {
            "trial_id": trial.trial_id,
            "worker": self.tuner_id,
            "pid": os.getpid(),
            "status": trial.status,
            "epochs": values.get("tuner/epochs", self.hypermodel.space.setting("training.epochs")),
            "history": self._history.pop(trial.trial_id, []),
            "train_seconds": round(seconds, 2),
            "started_at": (finished - dt.timedelta(seconds=seconds)).isoformat(timespec="seconds"),
            "finished_at": finished.isoformat(timespec="seconds"),
            "error": trial.message,
            "rss_mib": current_rss_mib(),
            "peak_rss_mib": peak_rss_mib(),
        }
        atomic_write_json(self.run.trials_dir / f"{trial.trial_id}.json", record)
        with _trials_lock(self.run):
            trials = write_trials_csv(self.run)
        log.info(format_trial_line(trial.trial_id, trials, seconds, time.monotonic() - self.search_started))


@contextmanager
def _trials_lock(run: RunFolder) -> Iterator[None]:
    """Serialise trials.csv rewrites between worker processes on one machine."""
    run.path.mkdir(parents=True, exist_ok=True)
    with open(run.path / ".trials.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def current_rss_mib() -> float | None:
    """Return this process's resident set size in MiB, or None where /proc is missing (not Linux)."""
    try:
        resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return round(resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def peak_rss_mib() -> float:
    """Return the largest resident set size of this process so far, in MiB."""
    # Linux reports ru_maxrss in KiB, macOS in bytes.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


def describe_values(values: dict[str, Any], baseline: dict[str, Any]) -> str:
    """Return the hyperparameters that differ from the baseline, as `name=value` pairs."""
    parts = []
    for name, value in sorted(values.items()):
        if name.startswith("tuner/") or baseline.get(name) == value:
            continue
        shown = f"{value:.3g}" if isinstance(value, float) else str(value)
        parts.append(f"{name.split('.', 1)[-1]}={shown}")
    return ", ".join(parts) if parts else "baseline values"


def format_trial_line(trial_id: str, trials: pd.DataFrame, seconds: float, elapsed: float) -> str:
    """Return the one log line that sums up a finished trial."""
    row = trials.set_index("trial_id").loc[trial_id]
    best = select_best_trial(trials)
    parts = [f"trial {trial_id} {str(row['status']).lower()} in {format_duration(seconds)}"]
    if pd.notna(row["val_mae"]):
        parts.append(f"val_mae {row['val_mae']:.2f} at epoch {int(row['best_epoch'])}")
    elif row["message"]:
        parts.append(f"error: {row['message']}")
    if pd.notna(row["bracket"]):
        parts.append(f"bracket {int(row['bracket'])} round {int(row['round'])}")
    if best is not None:
        parts.append(f"best {best['val_mae']:.2f} (trial {best['trial_id']})")
    done = int((trials["status"] == "COMPLETED").sum())
    failed = int((trials["status"] == "FAILED").sum())
    parts.append(f"{done} done, {failed} failed, {format_duration(elapsed)} elapsed")
    return " | ".join(parts)


def gpu_count() -> int:
    """Return the number of GPUs TensorFlow sees in this process."""
    return len(tf.config.list_physical_devices("GPU"))


def resolve_switch(value: str, name: str) -> bool:
    """Turn an `auto`/`on`/`off` option into a decision; `auto` means on when a GPU is present."""
    check_switch(value, name)
    return gpu_count() > 0 if value == "auto" else value == "on"


def prepare_search(options: SearchOptions) -> PreparedSearch:
    """Validate the space, dataset, weights and run folder; write config.json and split.csv.

    Nothing trains here, so every mistake in the input surfaces before the
    first trial. A run folder from an earlier search is resumed when its
    configuration matches, and rejected when it does not.
    """
    space = options.resolved_space()

    synthetic = options.data is None
    if synthetic:
        from tuner.synthetic import default_dataset, synthetic_warning

        layout = default_dataset()
        log.log(logging.WARNING if options.log_setup else logging.DEBUG, synthetic_warning(layout))
    else:
        layout = DatasetLayout(root=Path(options.data), **options.layout)

    run = RunFolder(Path(options.run_dir) if options.run_dir else default_run_dir(space))
    config = config_document(space, layout, options.limit, synthetic)
    resumed = _claim_run_folder(run, config, options.overwrite)
    if options.log_prefix is not None:
        attach_log_file(run.log_path, prefix=options.log_prefix)
    setup_level = logging.INFO if options.log_setup else logging.DEBUG
    if resumed:
        log.log(setup_level, "resuming the search in %s", run.path)

    # A process that does not show the setup again was started by one that checked the weights file.
    weights_path = resolve_weights(space.setting("backbone.weights"), verify=options.log_setup)

    if run.split_path.exists():
        # Every trial and every report of a run sees the same split, also after a resume.
        split = load_split(run.split_path)
        check_split_photos(split, run.split_path)
    else:
        frame = load_dataset(layout)
        if options.limit is not None and options.limit < len(frame):
            frame = frame.sample(n=options.limit, random_state=space.setting("search.seed")).reset_index(drop=True)
        split = split_dataset(frame, space.setting("data.validation_fraction"), seed=space.setting("search.seed"))
        save_split(split, run.split_path)
    counts = split["subset"].value_counts()
    log.log(setup_level, "data: %d photos from %s, %d for training and %d for validation", len(split), layout.root,
             counts.get("train", 0), counts.get("validation", 0))
    return PreparedSearch(space=space, run=run, split=split, weights_path=weights_path, config=config)


def _claim_run_folder(run: RunFolder, config: dict[str, Any], overwrite: bool) -> bool:
    """Make `run` this search's folder; return True when it holds an earlier part of the same search."""
    action, difference = run_folder_action(run, config, overwrite)
    if action == "overwrite":
        log.warning("--overwrite: deleting %s (tuner state, %d trial records, checkpoints, trials.csv)",
                    run.path, len(list(run.trials_dir.glob("*.json"))))
        shutil.rmtree(run.path)
    elif action == "restart":
        # An earlier attempt stopped before its first trial (a data error, say): nothing of it is
        # worth keeping, and its split may come from the other configuration.
        log.info("replacing the configuration of %s, whose search never started (%s)", run.path, difference)
        run.config_path.unlink()
        run.split_path.unlink(missing_ok=True)
    run.path.mkdir(parents=True, exist_ok=True)
    if not run.config_path.exists():
        atomic_write_json(run.config_path, config)
    return action in ("resume", "restart")


def baseline_values() -> dict[str, Any]:
    """Return the baseline space's settings by key, to show how a trial differs from the study."""
    return dict(load_space("baseline").fixed)


def build_tuner(prepared: PreparedSearch, mixed_precision: bool, jit_compile: bool,
                distribution_strategy: tf.distribute.Strategy | None = None) -> AgeTuner:
    """Return the tuner for a prepared search; it reloads the oracle when the run folder has one."""
    space = prepared.space
    hypermodel = AgeHyperModel(space, prepared.weights_path, mixed_precision=mixed_precision,
                               jit_compile=jit_compile, seed=space.setting("search.seed"))
    return AgeTuner(build_oracle(space), hypermodel, prepared.run, baseline_values(),
                    distribution_strategy=distribution_strategy)


def build_datasets(prepared: PreparedSearch, batch_size: int | None = None) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """Return the training and validation datasets of a prepared search."""
    space = prepared.space
    size = space.setting("data.image_size")
    batch = batch_size or space.setting("data.batch_size")
    cache_setting = space.setting("data.cache")
    seed = space.setting("search.seed")
    datasets = []
    for subset, training in (("train", True), ("validation", False)):
        frame = prepared.split[prepared.split["subset"] == subset].reset_index(drop=True)
        if frame.empty:
            raise AgetuneError(f"the {subset} subset is empty; use more photos or another validation fraction.")
        cache: str | Path | None = None if cache_setting == "none" else "memory"
        if cache_setting == "disk":
            cache = prepared.run.path / "cache" / subset
            cache.parent.mkdir(parents=True, exist_ok=True)
        datasets.append(make_dataset(frame, size, batch, training=training, cache=cache, seed=seed))
    return datasets[0], datasets[1]


def callbacks_for(space: SearchSpace) -> list[keras.callbacks.Callback]:
    """Return the callbacks every trial trains with."""
    # A NaN loss ends the trial, which Keras Tuner then records as failed.
    callbacks: list[keras.callbacks.Callback] = [keras.callbacks.TerminateOnNaN()]
    patience = space.setting("search.early_stopping_patience")
    if patience:
        # Keras Tuner copies callbacks for each fit, so patience counts within
        # one Hyperband round and never stops a model before its bracket
        # would promote it; the best epoch's weights are kept by the tuner.
        callbacks.append(keras.callbacks.EarlyStopping(monitor=space.setting("search.objective"), mode="min",
                                                       patience=patience))
    return callbacks


def hardware_summary() -> dict[str, Any]:
    """Return what the search ran on, for state.json and the report."""
    gpus = tf.config.list_physical_devices("GPU")
    names = []
    for gpu in gpus:
        details = tf.config.experimental.get_device_details(gpu)
        names.append(details.get("device_name", gpu.name))
    return {"host": platform.node(), "cpus": os.cpu_count(), "gpus": names, "python": platform.python_version(),
            "tensorflow": tf.__version__, "keras": keras.__version__, "keras_tuner": keras_tuner.__version__,
            "agetune": __version__}


@dataclass
class SearchSummary:
    """Trial counts, best trial and wall time of a finished search."""

    run_dir: Path
    trials: int
    completed: int
    failed: int
    best_trial: str | None
    best_val_mae: float | None
    wall_seconds: float


def run_search(options: SearchOptions) -> SearchSummary:
    """Run (or resume) a search to the end and save the best model; see `prepare_search` for the checks."""
    prepared = prepare_search(options)
    run = prepared.run
    mixed_precision = resolve_switch(options.mixed_precision, "mixed-precision")
    jit_compile = resolve_switch(options.xla, "xla")
    if mixed_precision:
        log.info("mixed precision on: float16 compute, float32 weights and output")

    started = mark_search_running(run)
    tuner = build_tuner(prepared, mixed_precision, jit_compile)
    try:
        search_trials(prepared, tuner, options.verbose)
    except KeyboardInterrupt:
        log.warning("search interrupted; the trial in progress will run again when the search resumes")
        run.update_state(status="interrupted", interrupted_at=_now(),
                         wall_seconds=round(time.monotonic() - started, 1))
        raise
    except RuntimeError as error:
        if "consecutive failures" not in str(error):
            raise
        run.update_state(status="failed", finished_at=_now())
        raise failed_trials_error(prepared, str(error)) from None
    return finish_search(run, started)


def mark_search_running(run: RunFolder, **details: Any) -> float:
    """Mark the search as running in state.json, with `details` added, and return its start time.

    The start is a `time.monotonic()` reading moved back by the wall time of
    earlier sessions of the same search, so that resumed searches add up.
    """
    started = time.monotonic() - float(run.read_state().get("wall_seconds", 0.0))
    run.update_state(status="running", started_at=_now(), hardware=hardware_summary(), argv=sys.argv, **details)
    return started


def search_elapsed(run: RunFolder) -> float:
    """Return the seconds this search has run so far, earlier sessions included, from state.json."""
    state = run.read_state()
    elapsed = float(state.get("wall_seconds", 0.0))
    if state.get("status") == "running" and state.get("started_at"):
        since = dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(state["started_at"])
        elapsed += max(0.0, since.total_seconds())
    return elapsed


def search_trials(prepared: PreparedSearch, tuner: AgeTuner, verbose: int | None = None,
                  batch_size: int | None = None) -> None:
    """Build the datasets and train the trials the oracle hands out until it stops.

    `verbose` is Keras' fit verbosity; None means a progress bar on a terminal
    and one line per epoch otherwise.
    """
    train, validation = build_datasets(prepared, batch_size)
    space = prepared.space
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2
    # The training dataset shuffles itself every epoch; Keras' own shuffle flag does not apply to it.
    tuner.search(train, validation_data=validation, epochs=space.setting("training.epochs"),
                 callbacks=callbacks_for(space), verbose=verbose, shuffle=False)


def failed_trials_error(prepared: PreparedSearch, message: str) -> AgetuneError:
    """Return the error for a search that Keras Tuner stopped after too many failed trials in a row."""
    run = prepared.run
    last_line = message.strip().splitlines()[-1]
    return AgetuneError(f"the search stopped after {prepared.space.setting('search.max_consecutive_failed_trials')} "
                        f"failed trials in a row; the last error was: {last_line}. See {run.log_path} "
                        f"and the message column of {run.trials_csv}.")


def finish_search(run: RunFolder, started: float) -> SearchSummary:
    """Write trials.csv, the best model and the final state of a search whose trials have all ended.

    `started` is a `time.monotonic()` reading moved back by the wall time of
    earlier sessions of the same search, so that resumed searches add up.
    """
    trials = write_trials_csv(run)
    best = select_best_trial(trials)
    if best is not None:
        model = load_trial_model(run, str(best["trial_id"]))
        model.save(run.best_model_path)
        log.info("best trial %s: val_mae %.2f; model saved to %s", best["trial_id"], best["val_mae"],
                 run.best_model_path)
    wall = time.monotonic() - started
    completed = int((trials["status"] == "COMPLETED").sum())
    failed = int((trials["status"] == "FAILED").sum())
    run.update_state(status="complete", finished_at=_now(), wall_seconds=round(wall, 1),
                     trials=len(trials), completed=completed, failed=failed)
    return SearchSummary(run.path, len(trials), completed, failed,
                         None if best is None else str(best["trial_id"]),
                         None if best is None else float(best["val_mae"]), wall)


def load_trial_model(run: RunFolder, trial_id: str) -> keras.Model:
    """Rebuild a trial's model from the run folder and load its best-epoch checkpoint."""
    config = run.read_config()
    space = parse_space(config["space"], name=config["space_name"])
    state_path = run.tuner_dir / f"trial_{trial_id}" / "trial.json"
    checkpoint = run.checkpoint_path(trial_id)
    if not state_path.exists() or not checkpoint.exists():
        raise RunFolderError(f"trial {trial_id} in {run.path} has no checkpoint ({checkpoint}). "
                             "It may have failed or still be running; pick a completed trial.")
    state = json.loads(state_path.read_text(encoding="utf-8"))
    hp = keras_tuner.HyperParameters.from_config(state["hyperparameters"])
    # The weights come from the checkpoint, so the backbone starts empty.
    model = AgeHyperModel(space, weights_path=None).build(hp)
    model.load_weights(checkpoint)
    return model


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
