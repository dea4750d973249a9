"""The report as a document: sections of localized, formatted blocks, which the templates render.

`make_figures` draws the report's figures as PNG bytes, and `build_document`
lays out the title, banners, summary and sections in one language from the
numbers of `tuner.report.build_report_data`. The `--gallery` section is the
only part that reads files: the validation photos it shows.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tuner import plots
from tuner.report_metrics import _plain, hyperparameter_columns, trial_totals

log = logging.getLogger(__name__)

#: Photos shown by --gallery: the validation photos with the largest absolute errors.
GALLERY_SIZE = 12
GALLERY_PIXELS = 160
# Photo names in error messages of failed trials, hidden so that a report names no photo.
PHOTO_NAME = re.compile(r"[^\s'\"]+\.(?:jpe?g|png|bmp|gif|webp)\b", re.IGNORECASE)


@dataclass
class Block:
    """One piece of a section: a paragraph, a list, a table, a figure or a gallery."""

    kind: str
    text: str = ""
    style: str = ""
    items: list[str] = field(default_factory=list)
    headers: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    numeric: list[bool] = field(default_factory=list)
    highlight: int | None = None
    file: str = ""
    png: bytes = b""
    photos: list[dict[str, str]] = field(default_factory=list)

    @property
    def data_uri(self) -> str:
        mime = "image/jpeg" if self.file.endswith(".jpg") else "image/png"
        return f"data:{mime};base64," + base64.b64encode(self.png).decode("ascii")


@dataclass
class Section:
    """A headed part of the report."""

    key: str
    title: str
    blocks: list[Block] = field(default_factory=list)


def years(value: float | None) -> str:
    """Format years (MAE, bias, ages) with two decimals; None becomes a dash."""
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}"


def signed(value: float | None) -> str:
    """Format a difference with its sign and two decimals."""
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:+.2f}"


def percent(share: float | None) -> str:
    """Format a share in [0, 1] as a percentage with one decimal."""
    return "-" if share is None else f"{100.0 * share:.1f}%"


def hp_value(value: Any) -> str:
    """Format a hyperparameter value as the space file writes it."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, float | np.floating):
        return str(int(value)) if float(value).is_integer() else f"{float(value):.3g}"
    return str(value)


def duration(seconds: float | None, text: dict[str, str]) -> str:
    """Format seconds as hours and minutes, or minutes and seconds."""
    if seconds is None:
        return text["unknown"]
    minutes, rest = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return text["duration_hours"].format(hours=hours, minutes=minutes)
    if minutes:
        return text["duration_minutes"].format(minutes=minutes, seconds=rest)
    return text["duration_seconds"].format(seconds=rest)


def _describe_spec(param: dict[str, Any]) -> str:
    spec = param["spec"]
    if param["kind"] == "choice":
        return ", ".join(hp_value(value) for value in spec["values"])
    if param["kind"] in ("int", "float"):
        described = f"{hp_value(spec['min'])} .. {hp_value(spec['max'])}"
        if spec.get("step"):
            described += f", step {hp_value(spec['step'])}"
        if spec.get("sampling", "linear") != "linear":
            described += f" ({spec['sampling']})"
        return described
    if param["kind"] == "boolean":
        return "false, true"
    return hp_value(spec.get("value"))


def _summary_blocks(data: dict[str, Any], text: dict[str, str]) -> list[Block]:
    best, baseline, comparison = data["best"], data["baseline"], data["comparison"]
    if baseline is None:
        difference = text["summary_no_baseline"]
    elif baseline["is_best"]:
        difference = text["summary_is_baseline"]
    elif round(comparison["val_mae"], 2) < 0:
        difference = text["summary_better"].format(years=years(-comparison["val_mae"]))
    elif round(comparison["val_mae"], 2) > 0:
        difference = text["summary_worse"].format(years=years(comparison["val_mae"]))
    else:
        difference = text["summary_same"]
    lines = [text["summary_best"].format(trial=best["trial_id"], mae=years(best["val_mae"]), difference=difference)]
    check = data["age_check"]
    values = {"threshold": check["threshold"], "legal_age": check["legal_age"],
              "share": percent(check["minors_passed_share"]), "passed": check["minors_passed"],
              "minors": check["minors"], "adult_share": percent(check["adults_checked_share"]),
              "checked": check["adults_checked"], "adults": check["adults"]}
    lines.append(text["summary_minors" if check["minors"] else "summary_no_minors"].format(**values))
    return [Block("summary", items=lines)]


def _data_blocks(data: dict[str, Any], text: dict[str, str], figures: dict[str, bytes]) -> list[Block]:
    summary = data["data"]
    blocks = [Block("paragraph", text["data_counts"].format(photos=summary["photos"], train=summary["train"],
                                                             validation=summary["validation"]))]
    if summary["limit"]:
        blocks.append(Block("paragraph", text["data_limit"].format(limit=summary["limit"])))
    names = [name for name in ("all", "train", "validation") if name in summary["ages"]]
    headers = [text["statistic"]] + [text["all_photos" if name == "all" else name] for name in names]
    rows = [[text["photos"]] + [str(summary["ages"][name]["photos"]) for name in names]]
    for key, label in (("mean", "age_mean"), ("median", "age_median"), ("min", "age_min"), ("max", "age_max")):
        rows.append([text[label]] + [years(summary["ages"][name][key]) for name in names])
    blocks.append(Block("table", headers=headers, rows=rows, numeric=[False] + [True] * len(names)))
    blocks.append(Block("figure", text=text["plot_ages_title"], file="ages.png", png=figures["ages.png"]))
    return blocks


def _search_blocks(data: dict[str, Any], text: dict[str, str]) -> list[Block]:
    search = data["search"]
    budget = search["budget"]
    if search["tuner"] == "hyperband":
        budget_text = text["budget_hyperband"].format(max_epochs=budget["max_epochs"], factor=budget["factor"],
                                                      iterations=budget["hyperband_iterations"])
    else:
        budget_text = text["budget_trials"].format(max_trials=budget["max_trials"], epochs=budget["epochs"])
    wall = duration(search["wall_seconds"], text)
    if data["run"]["partial"] and search["wall_seconds"] is not None:
        wall = text["wall_time_so_far"].format(duration=wall)
    hardware = search["hardware"]
    if hardware:
        gpus = ", ".join(hardware.get("gpus") or []) or text["no_gpu"]
        hardware_text = text["hardware_value"].format(
            host=hardware.get("host", "?"), cpus=hardware.get("cpus", "?"), gpus=gpus,
            tensorflow=hardware.get("tensorflow", "?"), keras=hardware.get("keras", "?"),
            keras_tuner=hardware.get("keras_tuner", "?"))
    else:
        hardware_text = text["unknown"]
    rows = [
        [text["tuner"], search["tuner"]],
        [text["objective"], search["objective"]],
        [text["budget"], budget_text],
        [text["trials_run"], str(search["trials"])],
        [text["trials_completed"], str(search["completed"])],
        [text["trials_failed"], str(search["failed"])],
    ]
    if search["running"]:
        rows.append([text["trials_running"], str(search["running"])])
    rows += [[text["wall_time"], wall], [text["train_time"], duration(search["train_seconds"], text)],
             [text["hardware"], hardware_text]]
    blocks = [Block("table", headers=[text["setting"], text["value"]], rows=rows, numeric=[False, False])]

    space_name = data["run"]["space_name"]
    if data["space"]:
        blocks.append(Block("subheading", text["space_heading"]))
        blocks.append(Block("paragraph", text["space_intro"].format(space=space_name)))
        blocks.append(Block("table", headers=[text["hyperparameter"], text["kind"], text["values"]],
                            rows=[[f"`{param['name']}`", param["kind"], _describe_spec(param)]
                                  for param in data["space"]],
                            numeric=[False, False, False]))
    else:
        blocks.append(Block("paragraph", text["space_none"].format(space=space_name)))
    return blocks


def _selection_blocks(data: dict[str, Any], text: dict[str, str]) -> list[Block]:
    best, baseline, comparison = data["best"], data["baseline"], data["comparison"]
    why = [text["selection_why"].format(trial=best["trial_id"], completed=best["completed"],
                                        mae=years(best["val_mae"]), epoch=best["best_epoch"])]
    if best["ties"]:
        why.append(text["selection_tie"].format(trials=", ".join(best["ties"]), trial=best["trial_id"]))
    if best["runner_up"]:
        why.append(text["selection_runner_up"].format(trial=best["runner_up"]["trial_id"],
                                                      mae=years(best["runner_up"]["val_mae"])))
    blocks = [Block("paragraph", " ".join(why)), Block("paragraph", text["selection_caveat"], style="muted")]

    if baseline is None:
        blocks.append(Block("paragraph", text["baseline_none"].format(run=data["run"]["name"]), style="note"))
    else:
        if baseline["source"] == "run":
            blocks.append(Block("paragraph", text["baseline_from_run"].format(trial=baseline["trial_id"],
                                                                               run=baseline["run_name"])))
        else:
            blocks.append(Block("paragraph", text["baseline_from_trial"].format(trial=baseline["trial_id"])))
        if baseline["overlap"]:
            shared, total = baseline["overlap"]
            blocks.append(Block("paragraph", text["baseline_other_photos"].format(shared=shared, total=total),
                                style="note"))

    headers = [text["metric"], text["best_model"]]
    if baseline is not None:
        headers += [text["baseline"], text["difference"]]
    metrics = [
        ("val_mae_years", "val_mae", years, signed),
        ("val_mape_percent", "val_mape", years, signed),
        ("epochs", "epochs", lambda value: str(int(value)), lambda value: f"{int(value):+d}"),
        ("training_time", "train_seconds", lambda value: duration(value, text),
         lambda value: ("+" if value >= 0 else "-") + duration(abs(value), text)),
    ]
    rows = []
    for label, key, show, show_difference in metrics:
        row = [text[label], show(best[key]) if best[key] is not None else "-"]
        if baseline is not None:
            row.append(show(baseline[key]) if baseline[key] is not None else "-")
            row.append(show_difference(comparison[key]) if comparison[key] is not None else "-")
        rows.append(row)
    blocks.append(Block("table", headers=headers, rows=rows, numeric=[False] + [True] * (len(headers) - 1)))
    if baseline is not None:
        blocks.append(Block("paragraph", text["difference_note"], style="muted"))

    settings = data["settings"]
    if settings:
        hp_headers = [text["hyperparameter"], text["best_model"]]
        if baseline is not None:
            hp_headers.append(text["baseline"])
        hp_rows = []
        for name, ours, theirs in settings:
            row = [f"`{name}`", hp_value(ours)]
            if baseline is not None:
                row.append(hp_value(theirs))
            hp_rows.append(row)
        if baseline is not None:
            blocks.append(Block("paragraph", text["settings_intro"]))
        blocks.append(Block("table", headers=hp_headers, rows=hp_rows, numeric=[False] * len(hp_headers)))
    return blocks


def _trials_blocks(data: dict[str, Any], text: dict[str, str]) -> list[Block]:
    trials = data["trials"]
    columns = hyperparameter_columns(trials)
    hyperband = data["hyperband"] is not None
    has_messages = trials["message"].notna().any()
    headers = [text["trial"], text["status"]]
    if hyperband:
        headers += [text["bracket"], text["round"]]
    headers += [text["epochs"], text["best_epoch"], text["val_mae"], text["val_mape"], text["train_mae"],
                text["time"]] + [f"`{column}`" for column in columns]
    if has_messages:
        headers.append(text["message"])
    rows = []
    for _, row in trials.iterrows():
        trial_id = str(row["trial_id"])
        totals = trial_totals(trial_id, trials)
        cells = [trial_id, text.get(f"status_{row['status']}", str(row["status"]).lower())]
        if hyperband:
            cells += [hp_value(row["bracket"]), hp_value(row["round"])]
        cells += [str(int(totals["epochs"])), hp_value(row["best_epoch"]), years(_plain(row["val_mae"])),
                  years(_plain(row["val_mape"])), years(_plain(row["mae"])),
                  duration(_plain(row["train_seconds"]), text) if pd.notna(row["train_seconds"]) else "-"]
        cells += [hp_value(_plain(row[column])) for column in columns]
        if has_messages:
            cells.append(redact_photos(row["message"]) if isinstance(row["message"], str) else "")
        rows.append(cells)
    numeric = [False, False] + [True] * (2 if hyperband else 0) + [True] * 6 + [False] * len(columns)
    numeric += [False] if has_messages else []
    best_row = trials.index[trials["trial_id"] == data["best"]["trial_id"]][0]
    return [Block("paragraph", text["trials_intro"]),
            Block("table", headers=headers, rows=rows, numeric=numeric, highlight=int(best_row))]


def redact_photos(message: str) -> str:
    """Replace photo file names and paths in an error message, so that the report names no photo."""
    return PHOTO_NAME.sub("[photo]", message)


def _hyperband_blocks(data: dict[str, Any], text: dict[str, str]) -> list[Block]:
    factor = data["search"]["budget"].get("factor")
    headers = [text["bracket"], text["round"], text["trials_count"], text["completed_count"], text["epochs_to"],
               text["epochs_trained"], text["best_val_mae"]]
    rows = [[str(entry["bracket"]), str(entry["round"]), str(entry["trials"]), str(entry["completed"]),
             str(entry["epochs_to"]), str(entry["epochs_trained"]), years(entry["best_val_mae"])]
            for entry in data["hyperband"]]
    return [Block("paragraph", text["hyperband_intro"].format(factor=factor)),
            Block("table", headers=headers, rows=rows, numeric=[True] * len(headers))]


def _errors_blocks(data: dict[str, Any], text: dict[str, str], figures: dict[str, bytes]) -> list[Block]:
    errors = data["errors"]
    blocks = [Block("paragraph", text["errors_intro"].format(trial=errors["trial_id"], photos=errors["photos"],
                                                              mae=years(errors["mae"]), bias=signed(errors["bias"])))]
    if errors["source"] == "recomputed":
        blocks.append(Block("paragraph", text["errors_model_changed"], style="muted"))
    blocks.append(Block("figure", text=text["plot_scatter_title"], file="predictions.png",
                        png=figures["predictions.png"]))
    rows = [[band["band"], str(band["photos"]), years(band["mae"]), signed(band["bias"])] for band in errors["bands"]]
    blocks.append(Block("table", headers=[text["band"], text["photos"], text["mae_years"], text["bias_years"]],
                        rows=rows, numeric=[False, True, True, True]))
    blocks.append(Block("paragraph", text["bands_note"], style="muted"))
    blocks.append(Block("figure", text=text["plot_bands_title"], file="age_bands.png", png=figures["age_bands.png"]))
    return blocks


def _check_blocks(data: dict[str, Any], text: dict[str, str], figures: dict[str, bytes]) -> list[Block]:
    check = data["age_check"]
    values = {"threshold": check["threshold"], "legal_age": check["legal_age"]}
    items = []
    if check["minors"]:
        low, high = check["interval"]
        items.append(text["check_minors"].format(passed=check["minors_passed"], minors=check["minors"],
                                                 share=percent(check["minors_passed_share"]), low=percent(low),
                                                 high=percent(high), **values))
    else:
        items.append(text["check_no_minors"].format(**values))
    if check["adults"]:
        items.append(text["check_adults"].format(checked=check["adults_checked"], adults=check["adults"],
                                                 share=percent(check["adults_checked_share"]), **values))
    else:
        items.append(text["check_no_adults"].format(**values))
    curve = data["age_check_curve"]
    rows = [[str(row["threshold"]),
             f"{percent(row['minors_passed_share'])} ({row['minors_passed']})",
             f"{percent(row['adults_checked_share'])} ({row['adults_checked']})"] for row in curve]
    return [
        Block("paragraph", text["check_rule"].format(**values)),
        Block("list", items=items),
        Block("paragraph", text["check_curve_intro"].format(first=curve[0]["threshold"], last=curve[-1]["threshold"])),
        Block("figure", text=text["plot_check_title"], file="age_check.png", png=figures["age_check.png"]),
        Block("table", headers=[text["threshold"], text["minors_passed"], text["adults_checked"]], rows=rows,
              numeric=[True, True, True],
              highlight=[row["threshold"] for row in curve].index(check["threshold"])),
    ]


def _gallery_blocks(data: dict[str, Any], text: dict[str, str]) -> list[Block]:
    from PIL import Image

    predictions = data["predictions"].assign(error=lambda frame: (frame["predicted"] - frame["age"]).abs())
    worst = predictions.sort_values("error", ascending=False).head(GALLERY_SIZE)
    paths = data["split"].set_index("file_name")["path"]
    photos = []
    for index, (_, row) in enumerate(worst.iterrows(), start=1):
        path = Path(paths[row["file_name"]])
        if not path.is_file():
            log.warning("gallery: photo %s not found; left out", path)
            continue
        with Image.open(path) as image:
            image = image.convert("RGB")
            image.thumbnail((GALLERY_PIXELS, GALLERY_PIXELS))
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=85)
        # .jpg, which .gitignore keeps out of the repository, unlike the report's PNGs.
        name = f"gallery-{index:02d}.jpg"
        photos.append({"file": name, "bytes": buffer.getvalue(),
                       "caption": text["gallery_caption"].format(file=row["file_name"], age=years(row["age"]),
                                                                 predicted=years(row["predicted"]))})
    block = Block("gallery", photos=[{**photo, "uri": "data:image/jpeg;base64,"
                                      + base64.b64encode(photo["bytes"]).decode("ascii")} for photo in photos])
    return [Block("paragraph", text["gallery_warning"], style="warning"), block]


def make_figures(data: dict[str, Any], text: dict[str, str]) -> dict[str, bytes]:
    """Draw every figure of the report; return PNG bytes by file name."""
    split, predictions = data["split"], data["predictions"]
    true = predictions["age"].to_numpy(dtype=np.float64)
    predicted = predictions["predicted"].to_numpy(dtype=np.float64)
    check = data["age_check"]
    figures = {
        "ages.png": plots.age_histogram(split.loc[split["subset"] == "train", "age"].to_numpy(dtype=np.float64),
                                        split.loc[split["subset"] == "validation", "age"].to_numpy(np.float64),
                                        text),
        "predictions.png": plots.predicted_vs_true(true, predicted, check["legal_age"], check["threshold"], text),
        "age_bands.png": plots.band_errors(pd.DataFrame(data["errors"]["bands"]), text),
        "age_check.png": plots.age_check_curves(pd.DataFrame(data["age_check_curve"]), check["threshold"], text),
    }
    curves = []
    for key, color, label in (("best", plots.BLUE, "curve_best"), ("baseline", plots.ORANGE, "curve_baseline")):
        history = data["histories"][key]
        owner = data[key]
        if history is None or owner is None or not history[0]:
            continue
        if key == "baseline" and owner["source"] == "trial" and owner["trial_id"] == data["best"]["trial_id"]:
            continue
        entries, continued_at = history
        curves.append(plots.Curve(text[label].format(trial=owner["trial_id"]),
                                  [entry["epoch"] for entry in entries],
                                  [entry.get("mae", math.nan) for entry in entries],
                                  [entry.get("val_mae", math.nan) for entry in entries], color, continued_at))
    if curves:
        figures["learning_curves.png"] = plots.learning_curves(curves, text)
    if data["effects"]:
        done = data["trials"][(data["trials"]["status"] == "COMPLETED") & data["trials"]["val_mae"].notna()]
        figures["hyperparameters.png"] = plots.hyperparameter_effects(done, data["effects"],
                                                                      data["best"]["trial_id"], text)
    return figures


def build_document(data: dict[str, Any], text: dict[str, str], figures: dict[str, bytes],
                   gallery: bool = False) -> dict[str, Any]:
    """Lay the report out as a title, banners, a summary and sections of blocks, in one language."""
    run = data["run"]
    banners = []
    if run["partial"]:
        banners.append(Block("paragraph", text["partial"].format(trials=data["search"]["trials"]), style="warning"))
    elif run["interrupted"]:
        banners.append(Block("paragraph", text["interrupted"].format(trials=data["search"]["trials"]),
                             style="warning"))
    spread = data["errors"]["spread"]
    if spread["near_constant"]:
        banners.append(Block("paragraph", text["near_constant"].format(
            trial=data["errors"]["trial_id"], predicted=f"{spread['predicted_std']:.1f}",
            true=f"{spread['true_std']:.1f}"), style="warning"))
    if data["data"]["synthetic"]:
        banners.append(Block("paragraph", text["synthetic"], style="note"))

    sections = [
        Section("data", text["data_heading"], _data_blocks(data, text, figures)),
        Section("search", text["search_heading"], _search_blocks(data, text)),
        Section("selection", text["selection_heading"], _selection_blocks(data, text)),
    ]
    if "learning_curves.png" in figures:
        sections.append(Section("curves", text["curves_heading"], [
            Block("paragraph", text["curves_intro"]),
            Block("figure", text=text["plot_curves_title"], file="learning_curves.png",
                  png=figures["learning_curves.png"])]))
    sections.append(Section("trials", text["trials_heading"], _trials_blocks(data, text)))
    if "hyperparameters.png" in figures:
        sections.append(Section("effects", text["effects_heading"], [
            Block("paragraph", text["effects_intro"]),
            Block("figure", text=text["plot_effects_title"], file="hyperparameters.png",
                  png=figures["hyperparameters.png"])]))
    if data["hyperband"]:
        sections.append(Section("hyperband", text["hyperband_heading"], _hyperband_blocks(data, text)))
    sections.append(Section("errors", text["errors_heading"], _errors_blocks(data, text, figures)))
    sections.append(Section("check", text["check_heading"], _check_blocks(data, text, figures)))
    if gallery:
        sections.append(Section("gallery", text["gallery_heading"], _gallery_blocks(data, text)))

    written = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return {
        "title": text["title"].format(run=run["name"]),
        "subtitle": text["subtitle"].format(run=run["name"], space=run["space_name"], written=written),
        "banners": banners,
        "summary_heading": text["summary_heading"],
        "summary": _summary_blocks(data, text)[0],
        "sections": sections,
    }
