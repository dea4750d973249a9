"""The figures of `agetune report`, each returned as PNG bytes.

Figures are drawn on matplotlib's Agg canvas directly, without pyplot, so no
GUI backend is touched and no figure outlives its function. Every label
comes from the report's strings (`tuner.report_text`), so the same code draws
the English and the Russian report.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

BLUE = "#1f5fa8"
ORANGE = "#d9822b"
RED = "#c0392b"
GREEN = "#2e8b57"
GREY = "#8a8f98"
DPI = 110

STYLE = {
    "font.size": 9.5,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.labelsize": 9.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.edgecolor": "#555555",
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.color": "#e3e3e3",
    "grid.linewidth": 0.8,
    "legend.frameon": False,
    "legend.fontsize": 8.5,
}


@dataclass(frozen=True)
class Curve:
    """One model's MAE per epoch; `continued_at` is the last epoch taken from earlier Hyperband rounds."""

    label: str
    epochs: Sequence[int]
    train_mae: Sequence[float]
    val_mae: Sequence[float]
    color: str
    continued_at: int | None = None


@dataclass(frozen=True)
class Effect:
    """One searched hyperparameter: its column in the trials table and how to draw it (number, log or choice)."""

    name: str
    kind: str


@contextmanager
def _figure(width: float, height: float) -> Iterator[Figure]:
    with matplotlib.rc_context(STYLE):
        figure = Figure(figsize=(width, height), dpi=DPI)
        FigureCanvasAgg(figure)
        yield figure


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    # No metadata, so the same data always gives the same bytes.
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def age_histogram(train: np.ndarray, validation: np.ndarray, text: dict[str, str]) -> bytes:
    """Draw the age distribution of the training and validation photos, stacked in 5-year bins."""
    ages = np.concatenate([train, validation])
    top = max(5.0, math.ceil(float(ages.max()) / 5.0) * 5.0 + 5.0) if len(ages) else 5.0
    bins = np.arange(0.0, top + 0.1, 5.0)
    with _figure(7.0, 3.4) as figure:
        axes = figure.add_subplot()
        axes.hist([train, validation], bins=bins, stacked=True, color=[BLUE, ORANGE], edgecolor="white",
                  label=[text["train"], text["validation"]])
        axes.set_title(text["plot_ages_title"])
        axes.set_xlabel(text["plot_ages_x"])
        axes.set_ylabel(text["plot_ages_y"])
        axes.set_xticks(bins[::2] if len(bins) > 16 else bins)
        axes.grid(axis="x", visible=False)
        axes.legend()
        return _png(figure)


def learning_curves(curves: Sequence[Curve], text: dict[str, str]) -> bytes:
    """Draw training (dashed) and validation (solid) MAE per epoch of each curve.

    An epoch whose MAE is far above the rest (a diverging epoch) would flatten
    every other point, so the y axis stops at 3 times the median MAE and such
    points are drawn as triangles on the top edge.
    """
    values = np.array([value for curve in curves for value in (*curve.train_mae, *curve.val_mae)], dtype=float)
    values = values[np.isfinite(values)]
    ceiling = 3.0 * float(np.median(values)) if len(values) else math.inf
    clip = bool(len(values)) and float(values.max()) > ceiling
    with _figure(7.0, 4.2) as figure:
        axes = figure.add_subplot()
        for curve in curves:
            if clip:
                for series in (curve.train_mae, curve.val_mae):
                    above = [(epoch, value) for epoch, value in zip(curve.epochs, series, strict=True)
                             if value > ceiling]
                    if above:
                        axes.scatter([epoch for epoch, _ in above], [ceiling] * len(above), marker="^",
                                     color=curve.color, s=45, zorder=3, clip_on=False)
            axes.plot(curve.epochs, curve.val_mae, color=curve.color, marker="o", markersize=4, linewidth=1.8,
                      label=text["curve_val"].format(name=curve.label))
            axes.plot(curve.epochs, curve.train_mae, color=curve.color, marker="o", markersize=3, linewidth=1.2,
                      linestyle="--", alpha=0.8, label=text["curve_train"].format(name=curve.label))
            if curve.continued_at is not None:
                axes.axvline(curve.continued_at + 0.5, color=curve.color, linestyle=":", linewidth=1)
        if clip:
            axes.set_ylim(0.0, ceiling)
        axes.set_title(text["plot_curves_title"])
        axes.set_xlabel(text["plot_epoch"])
        axes.set_ylabel(text["plot_mae_years"])
        last = max((max(curve.epochs) for curve in curves if len(curve.epochs)), default=1)
        axes.set_xlim(0.5, last + 0.5)
        if last <= 20:
            axes.set_xticks(range(1, last + 1))
        else:
            axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
        return _png(figure)


def hyperparameter_effects(trials: pd.DataFrame, effects: Sequence[Effect], best_trial: str,
                           text: dict[str, str]) -> bytes:
    """Draw val MAE against each searched hyperparameter, one small panel each, the best trial in orange."""
    columns = min(3, len(effects))
    rows = math.ceil(len(effects) / columns)
    # At least 5 inches wide, so that the figure title fits above a single panel.
    with _figure(max(5.0, 3.0 * columns + 0.6), 2.6 * rows + 0.5) as figure:
        figure.suptitle(text["plot_effects_title"], fontsize=11, fontweight="bold")
        for index, effect in enumerate(effects):
            axes = figure.add_subplot(rows, columns, index + 1)
            frame = trials[["trial_id", effect.name, "val_mae"]]
            if effect.kind == "choice":
                _strip(axes, frame, effect.name, best_trial)
            else:
                _scatter(axes, frame, effect.name, best_trial, log=effect.kind == "log")
            axes.set_title(effect.name, fontsize=9.5, fontweight="normal")
            axes.set_ylabel(text["plot_val_mae_years"] if index % columns == 0 else "")
        return _png(figure)


def _scatter(axes: Axes, frame: pd.DataFrame, column: str, best_trial: str, log: bool) -> None:
    frame = frame[frame[column].notna()]
    best = frame["trial_id"] == best_trial
    values = frame[column].astype(float)
    axes.scatter(values[~best], frame["val_mae"][~best], color=BLUE, s=22, alpha=0.75)
    axes.scatter(values[best], frame["val_mae"][best], color=ORANGE, s=40, zorder=3)
    if log:
        axes.set_xscale("log")
        # Ticks at 1 and 3 per decade, written as plain numbers (0.0003), not as powers of ten.
        axes.xaxis.set_major_locator(LogLocator(base=10.0, subs=(1.0, 3.0)))
        axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axes.xaxis.set_minor_formatter(NullFormatter())


def _strip(axes: Axes, frame: pd.DataFrame, column: str, best_trial: str) -> None:
    # Choices keep their order of value (numbers ascending, False before True), one column each.
    labels = sorted(frame[column].dropna().unique().tolist(), key=lambda value: (str(type(value)), value))
    rng = np.random.default_rng(0)
    for position, value in enumerate(labels):
        group = frame[frame[column] == value]
        jitter = rng.uniform(-0.12, 0.12, size=len(group))
        best = (group["trial_id"] == best_trial).to_numpy()
        axes.scatter(position + jitter[~best], group["val_mae"][~best], color=BLUE, s=22, alpha=0.75)
        axes.scatter(position + jitter[best], group["val_mae"][best], color=ORANGE, s=40, zorder=3)
        if len(group):
            median = float(group["val_mae"].median())
            axes.plot([position - 0.25, position + 0.25], [median, median], color="#333333", linewidth=1.5)
    axes.set_xticks(range(len(labels)), [_short(value) for value in labels])
    axes.set_xlim(-0.6, len(labels) - 0.4)
    axes.grid(axis="x", visible=False)


def _short(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def predicted_vs_true(true: np.ndarray, predicted: np.ndarray, legal_age: int, threshold: int,
                      text: dict[str, str]) -> bytes:
    """Draw predicted against true age, with the region of minors who would pass the till shaded."""
    top = max(float(np.max(true)), float(np.max(predicted)), float(threshold)) * 1.05 + 1.0
    with _figure(5.6, 5.0) as figure:
        axes = figure.add_subplot()
        axes.fill_between([0, legal_age], threshold, top, color=RED, alpha=0.10, linewidth=0,
                          label=text["plot_minors_pass"])
        axes.plot([0, top], [0, top], color=GREY, linewidth=1, label=text["plot_perfect"])
        axes.axhline(threshold, color=RED, linewidth=0.8, linestyle="--")
        axes.axvline(legal_age, color=GREY, linewidth=0.8, linestyle=":")
        axes.scatter(true, predicted, color=BLUE, s=22, alpha=0.7, linewidths=0)
        axes.set_xlim(0, top)
        axes.set_ylim(0, top)
        axes.set_aspect("equal")
        axes.set_title(text["plot_scatter_title"])
        axes.set_xlabel(text["plot_true_age"])
        axes.set_ylabel(text["plot_predicted_age"])
        axes.legend(loc="upper left")
        return _png(figure)


def band_errors(bands: pd.DataFrame, text: dict[str, str]) -> bytes:
    """Draw MAE and bias per age band as grouped bars; empty bands are left blank."""
    positions = np.arange(len(bands))
    with _figure(7.0, 3.4) as figure:
        axes = figure.add_subplot()
        axes.bar(positions - 0.2, bands["mae"].fillna(0.0), width=0.4, color=BLUE, label=text["plot_mae"])
        axes.bar(positions + 0.2, bands["bias"].fillna(0.0), width=0.4, color=ORANGE, label=text["plot_bias"])
        axes.axhline(0.0, color="#555555", linewidth=0.8)
        axes.set_xticks(positions, bands["band"])
        axes.grid(axis="x", visible=False)
        axes.set_title(text["plot_bands_title"])
        axes.set_xlabel(text["plot_bands_x"])
        axes.set_ylabel(text["plot_years"])
        axes.legend()
        return _png(figure)


def age_check_curves(curve: pd.DataFrame, threshold: int, text: dict[str, str]) -> bytes:
    """Draw the share of minors passing and of adults checked (in %) over the thresholds of `curve`."""
    with _figure(7.0, 3.9) as figure:
        axes = figure.add_subplot()
        axes.plot(curve["threshold"], 100.0 * curve["minors_passed_share"], color=RED, marker="o", markersize=4,
                  label=text["minors_passed"])
        axes.plot(curve["threshold"], 100.0 * curve["adults_checked_share"], color=BLUE, marker="o",
                  markersize=4, label=text["adults_checked"])
        axes.axvline(threshold, color=GREY, linestyle="--", linewidth=1,
                     label=text["plot_chosen"].format(threshold=threshold))
        axes.set_xticks(curve["threshold"])
        axes.set_ylim(-2, 102)
        axes.set_title(text["plot_check_title"])
        axes.set_xlabel(text["plot_threshold"])
        axes.set_ylabel(text["plot_share"])
        axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3)
        return _png(figure)
