"""The `agetune` command line: parses options and calls the library; no logic of its own."""

from __future__ import annotations

import logging
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, NoReturn, TypeVar

import typer

from tuner.errors import AgetuneError
from tuner.logs import configure_console

log = logging.getLogger("tuner.cli")

app = typer.Typer(
    name="agetune",
    help="Find the best ResNet50 age regressor for a face photo dataset with Keras Tuner.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

T = TypeVar("T")

#: Trials per process of `agetune search`; a fresh process adds 7 to 9 s between trials on 2 CPU cores.
DEFAULT_TRIALS_PER_PROCESS = 1

DataOption = Annotated[Path | None, typer.Option(
    "--data", "-d", help="Dataset folder with labels.csv and final_files/; the built-in synthetic set when omitted.")]
LabelsOption = Annotated[str, typer.Option(help="Labels CSV, relative to the dataset folder or absolute.")]
ImagesOption = Annotated[str, typer.Option(help="Photo folder, relative to the dataset folder or absolute.")]
FileColumnOption = Annotated[str, typer.Option(help="CSV column with the photo file names.")]
AgeColumnOption = Annotated[str, typer.Option(help="CSV column with the ages in years.")]
# Every command takes it too, so that `agetune search -v` works as well as `agetune -v search`.
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Log debug details.")]


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def guarded(action: Callable[[], T]) -> T:
    """Run `action`, turning agetune's fatal errors into one message on stderr and exit code 1."""
    try:
        return action()
    except AgetuneError as error:
        _fail(str(error))


def _layout_options(labels: str, images: str, file_column: str, age_column: str) -> dict[str, str]:
    return {"labels": labels, "images": images, "file_column": file_column, "age_column": age_column}


def _debug_logging(verbose: bool) -> None:
    # The callback has already set up the console; a command's own -v only turns debug output on.
    if verbose:
        configure_console(verbose=True)


@app.callback()
def main(verbose: VerboseOption = False) -> None:
    """Find the best ResNet50 age regressor for a face photo dataset with Keras Tuner."""
    configure_console(verbose)


@app.command()
def search(
    space: Annotated[str, typer.Option("--space", "-s", help="A shipped space (quick, default, baseline) or a .toml path.")] = "quick",
    data: DataOption = None,
    labels: LabelsOption = "labels.csv",
    images: ImagesOption = "final_files",
    file_column: FileColumnOption = "file_name",
    age_column: AgeColumnOption = "real_age",
    run: Annotated[Path | None, typer.Option("--run", "-r", help="Run folder; runs/<space name> by default. An existing one resumes.")] = None,
    tuner: Annotated[str | None, typer.Option(help="Override the oracle: hyperband, random or bayesian.")] = None,
    weights: Annotated[str | None, typer.Option(help="Backbone weights: imagenet, none, or a path to a .h5 file.")] = None,
    image_size: Annotated[int | None, typer.Option(help="Override the input size in pixels.")] = None,
    max_epochs: Annotated[int | None, typer.Option(help="Override Hyperband's maximum epochs per model.")] = None,
    max_trials: Annotated[int | None, typer.Option(help="Stop after this many trials; Hyperband otherwise runs its brackets to the end.")] = None,
    limit: Annotated[int | None, typer.Option(help="Use a seeded sample of this many photos (for quick checks).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Delete the run folder's earlier search and start afresh.")] = False,
    mixed_precision: Annotated[str, typer.Option(help="float16 compute: auto (on with a GPU), on or off.")] = "auto",
    xla: Annotated[str, typer.Option(help="XLA compilation: auto (on with a GPU), on or off.")] = "auto",
    workers: Annotated[int | None, typer.Option(help="Train trials in parallel in this many CPU-only worker processes, each on an equal share of the cores.")] = None,
    gpus: Annotated[str | None, typer.Option(help="Train trials in parallel, one worker per GPU: all, a count (2) or GPU indices (0,2,3).")] = None,
    gpus_per_trial: Annotated[int, typer.Option(help="GPUs per worker with --gpus; a trial trains on them with MirroredStrategy and a global batch of batch_size x this.")] = 1,
    role: Annotated[str | None, typer.Option(help="Run one part of a search across machines: chief (the oracle, no training) or worker.")] = None,
    oracle_address: Annotated[str | None, typer.Option(help="HOST:PORT of the oracle. The chief listens there (pass 0.0.0.0:PORT to accept other machines; no authentication), workers connect to it.")] = None,
    worker_id: Annotated[str | None, typer.Option(help="Id of this worker with --role worker, unique in the search; restart a crashed worker with the same id to rerun its trial.")] = None,
    max_trials_per_process: Annotated[int, typer.Option(help="Train this many trials in one process, then end it and start a fresh one: only the end of a process returns the memory TensorFlow keeps after each trial (about 350 MB). 0 trains every trial in this process; a worker started by hand with --role worker always does.")] = DEFAULT_TRIALS_PER_PROCESS,
    supervised: Annotated[bool, typer.Option(hidden=True, help="Set by agetune on the processes it starts itself.")] = False,
    verbose: VerboseOption = False,
) -> None:
    """Run a Keras Tuner search; run it again to resume after any interruption.

    With --workers or --gpus, trials run in parallel worker processes on this
    machine; with --role, this process is one part of a search across machines.
    """
    _debug_logging(verbose)
    from tuner.options import SearchOptions, check_before_tensorflow

    options = SearchOptions(space=space, data=data, layout=_layout_options(labels, images, file_column, age_column),
                            run_dir=run, tuner=tuner, weights=weights, image_size=image_size, max_epochs=max_epochs,
                            max_trials=max_trials, limit=limit, overwrite=overwrite,
                            mixed_precision=mixed_precision, xla=xla)
    if not supervised and role is None:
        # Processes that agetune starts itself, and the parts of a search across machines, skip it:
        # their input was checked where the search started, or its data may live elsewhere.
        guarded(lambda: check_before_tensorflow(options))

    from tuner.distributed import (EXIT_CHILD_FATAL, EXIT_INTERRUPTED, EXIT_RECYCLE, EXIT_TERMINATED,
                                   ParallelOptions, SearchTerminated, run_parallel_search)
    from tuner.search import TrialsPerProcessReached, run_search
    from tuner.trial_process import run_search_in_processes, run_trial_process

    parallel = ParallelOptions(workers=workers, gpus=gpus, gpus_per_trial=gpus_per_trial, role=role,
                               oracle_address=oracle_address, worker_id=worker_id, supervised=supervised,
                               max_trials_per_process=max_trials_per_process)
    resume = " ".join(shlex.quote(part) for part in ["agetune", *sys.argv[1:]] if part != "--overwrite")
    in_progress = "trials in progress" if parallel.enabled else "trial in progress"
    try:
        parallel.validate()
        if parallel.enabled:
            summary = run_parallel_search(options, parallel)
        elif supervised:
            run_trial_process(options, max_trials_per_process)
            summary = None
        elif max_trials_per_process:
            summary = run_search_in_processes(options, max_trials_per_process)
        else:
            summary = run_search(options)
    except TrialsPerProcessReached:
        raise typer.Exit(EXIT_RECYCLE) from None
    except AgetuneError as error:
        # The supervisor distinguishes a fatal error of its child from a crash, which it restarts, by this exit code.
        _fail(str(error), EXIT_CHILD_FATAL if supervised else 1)
    except KeyboardInterrupt:
        if not supervised:
            typer.echo(f"\nSearch interrupted; the {in_progress} will run again. Resume with:\n  {resume}",
                       err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except SearchTerminated:
        typer.echo(f"\nSearch stopped by SIGTERM; the {in_progress} will run again. Resume with:\n  {resume}",
                   err=True)
        raise typer.Exit(EXIT_TERMINATED) from None
    if summary is None:
        # A worker's part, a supervised chief's or a trial process's ends here; the search ends in its supervisor.
        if not supervised:
            typer.echo("workers done: the oracle has no trial left for them. The chief writes the best model.")
        return
    if summary.best_trial is None:
        _fail(f"no trial completed in {summary.run_dir}; see {summary.run_dir / 'search.log'}.")
    typer.echo(f"search complete: {summary.completed} of {summary.trials} trials completed, {summary.failed} failed; "
               f"best trial {summary.best_trial} with val MAE {summary.best_val_mae:.2f} years. "
               f"Next: agetune report {summary.run_dir}")


@app.command()
def data(
    root: Annotated[Path, typer.Argument(help="Dataset folder with labels.csv and final_files/.")],
    labels: LabelsOption = "labels.csv",
    images: ImagesOption = "final_files",
    file_column: FileColumnOption = "file_name",
    age_column: AgeColumnOption = "real_age",
    out: Annotated[Path | None, typer.Option(help="Where to write the age histogram PNG; none by default.")] = None,
    skip_images: Annotated[bool, typer.Option(help="Check the CSV only, not whether each photo decodes.")] = False,
    verbose: VerboseOption = False,
) -> None:
    """Validate a dataset and print its summary: photos, ages, problems."""
    _debug_logging(verbose)
    from tuner.data import DatasetLayout, check_dataset, describe_dataset

    layout = DatasetLayout(root=root, **_layout_options(labels, images, file_column, age_column))
    check = guarded(lambda: check_dataset(layout, verify_images=not skip_images))
    typer.echo(describe_dataset(check, out))
    if check.fatal:
        guarded(check.raise_if_fatal)


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="The run folder of a search.")],
    out: Annotated[Path | None, typer.Option(help="Report folder; reports/<run name> by default.")] = None,
    lang: Annotated[str, typer.Option(help="Report language: en or ru.")] = "en",
    baseline: Annotated[Path | None, typer.Option(help="Run folder of a baseline search to compare with.")] = None,
    legal_age: Annotated[int, typer.Option(help="The legal age for buying alcohol, in years.")] = 18,
    threshold: Annotated[int, typer.Option(help="Estimated age below which the till asks for an ID, in years.")] = 25,
    gallery: Annotated[bool, typer.Option(help="Add photos of the worst errors (private use; mind the photo licence).")] = False,
    verbose: VerboseOption = False,
) -> None:
    """Write a report that selects the best model and compares it with the baseline."""
    _debug_logging(verbose)
    from tuner.report import write_report

    folder = guarded(lambda: write_report(run_dir, out=out, lang=lang, baseline=baseline, legal_age=legal_age,
                                          threshold=threshold, gallery=gallery))
    typer.echo(f"report written to {folder}")


@app.command("export-best")
def export_best(
    run_dir: Annotated[Path, typer.Argument(help="The run folder of a search.")],
    out: Annotated[Path | None, typer.Option(help="Export folder; <run folder>/export by default.")] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing export folder.")] = False,
    retrain: Annotated[bool, typer.Option(help="Retrain the best hyperparameters on train + validation first.")] = False,
    tflite: Annotated[str, typer.Option(help="TFLite quantisation: float16, int8 or none.")] = "float16",
    threshold: Annotated[int, typer.Option(help="The ID-check threshold written into the model card, in years.")] = 25,
    verbose: VerboseOption = False,
) -> None:
    """Export the best model as .keras, SavedModel and TFLite files with a model card."""
    _debug_logging(verbose)
    from tuner.export import export_best as export

    folder = guarded(lambda: export(run_dir, out=out, force=force, retrain=retrain, tflite=tflite,
                                    threshold=threshold))
    typer.echo(f"exported to {folder}")


@app.command()
def predict(
    model: Annotated[Path, typer.Argument(help="A .keras file, a SavedModel folder or a .tflite file.")],
    photos: Annotated[list[Path], typer.Argument(help="Photos or folders of photos.")],
    out: Annotated[Path | None, typer.Option(help="Write a CSV here instead of a table on screen.")] = None,
    threshold: Annotated[int, typer.Option(help="Flag an ID check below this estimated age, in years.")] = 25,
    verbose: VerboseOption = False,
) -> None:
    """Estimate ages of new photos with an exported model."""
    _debug_logging(verbose)
    from tuner.export import predict_photos

    guarded(lambda: predict_photos(model, photos, out=out, threshold=threshold))
