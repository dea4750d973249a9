"""Pure computations of the report, testable on hand-made numbers.

They cover the age check at the till with its Wilson interval and the errors
per age band. They also count a trial's history, epochs and training time
together with the Hyperband trials it continued, and match trials and
settings with the baseline. `tuner.report` gathers them into the report's
numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from tuner.data import AGE_BANDS
from tuner.run import TRIAL_COLUMNS

# Head settings that do nothing without a dense layer, ignored when comparing such a trial with the baseline.
HEAD_KEYS = ("head.units", "head.dropout", "head.activation")
# Settings (by prefix) that do not shape the model, left out when a run's settings are compared with the baseline's.
UNCOMPARED_SETTINGS = ("search.", "data.cache")


def age_check(true: Sequence[float] | np.ndarray, predicted: Sequence[float] | np.ndarray, legal_age: int,
              threshold: int) -> dict[str, Any]:
    """Count how the till treats each person when it requests an ID below `threshold` estimated years.

    Minors (true age < `legal_age`) estimated at `threshold` or older pass
    without an ID check; adults (true age >= `legal_age`) estimated under
    `threshold` are asked for an ID. Shares are None when the group is empty.
    """
    true = np.asarray(true, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    minors = true < legal_age
    passed = minors & (predicted >= threshold)
    adults = ~minors
    checked = adults & (predicted < threshold)
    minor_count, adult_count = int(minors.sum()), int(adults.sum())
    return {
        "legal_age": legal_age,
        "threshold": threshold,
        "minors": minor_count,
        "minors_passed": int(passed.sum()),
        "minors_passed_share": int(passed.sum()) / minor_count if minor_count else None,
        "adults": adult_count,
        "adults_checked": int(checked.sum()),
        "adults_checked_share": int(checked.sum()) / adult_count if adult_count else None,
    }


def age_check_curve(true: np.ndarray, predicted: np.ndarray, legal_age: int,
                    thresholds: Sequence[int]) -> pd.DataFrame:
    """Return `age_check` for each threshold, one row each."""
    return pd.DataFrame([age_check(true, predicted, legal_age, threshold) for threshold in thresholds])


def wilson_interval(successes: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """Return the Wilson score interval of a share (95% for z = 1.96), which stays inside [0, 1] for few cases."""
    if total <= 0:
        raise ValueError(f"total must be positive, got {total}")
    share = successes / total
    denominator = 1.0 + z * z / total
    centre = (share + z * z / (2.0 * total)) / denominator
    half = z * math.sqrt(share * (1.0 - share) / total + z * z / (4.0 * total * total)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


#: Ratio of the standard deviation of the estimates to that of the true ages below which a model counts as constant.
NEAR_CONSTANT_RATIO = 0.25


def prediction_spread(true: Sequence[float] | np.ndarray, predicted: Sequence[float] | np.ndarray) -> dict[str, Any]:
    """Return the standard deviations of the true and estimated ages, and whether the estimates are nearly constant.

    An undertrained regressor trained with MAE settles near the median age
    and gives every face about the same estimate. Its MAE can still look
    plausible, so the report warns about it in a banner.
    """
    true_std = float(np.std(np.asarray(true, dtype=np.float64)))
    predicted_std = float(np.std(np.asarray(predicted, dtype=np.float64)))
    near_constant = true_std > 0 and predicted_std < NEAR_CONSTANT_RATIO * true_std
    return {"true_std": true_std, "predicted_std": predicted_std, "near_constant": bool(near_constant)}


def band_errors(true: Sequence[float] | np.ndarray, predicted: Sequence[float] | np.ndarray) -> pd.DataFrame:
    """Return photos, MAE and bias (mean predicted - true) per age band of `tuner.data.AGE_BANDS`.

    A band without photos gets NaN for MAE and bias.
    """
    true = np.asarray(true, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    rows = []
    for label, low, high in AGE_BANDS:
        inside = (true >= low) & (true < high)
        errors = predicted[inside] - true[inside]
        rows.append({
            "band": label,
            "photos": int(inside.sum()),
            "mae": float(np.mean(np.abs(errors))) if len(errors) else math.nan,
            "bias": float(np.mean(errors)) if len(errors) else math.nan,
        })
    return pd.DataFrame(rows)


def chain_history(trial_id: str, trials: pd.DataFrame, records: dict[str, dict[str, Any]]
                  ) -> tuple[list[dict[str, Any]], int | None]:
    """Return a trial's per-epoch history, preceded by the epochs of the Hyperband trials it continued.

    The second value is the last epoch taken from earlier rounds (None for a
    trial that started from scratch, or whose parent left no record).
    """
    by_id = trials.set_index("trial_id")
    chain = _chain_ids(trial_id, trials)
    combined: list[dict[str, Any]] = []
    continued_at = None
    for tid in reversed(chain):
        if combined and tid in by_id.index:
            # A continuing trial starts after the parent's last epoch; drop any parent epochs past that point.
            start = int(_number(by_id.loc[tid, "initial_epoch"]))
            combined = [entry for entry in combined if entry.get("epoch", 0) <= start]
            if tid == trial_id and combined:
                continued_at = start
        combined += list(records.get(tid, {}).get("history", []))
    return combined, continued_at


def _chain_ids(trial_id: str, trials: pd.DataFrame) -> list[str]:
    """Return the trial and the Hyperband trials it continued, newest first."""
    by_id = trials.set_index("trial_id")
    chain = [trial_id]
    while chain[-1] in by_id.index:
        parent = by_id.loc[chain[-1], "parent_trial"]
        if parent is None or pd.isna(parent) or str(parent) in chain:
            break
        chain.append(str(parent))
    return chain


def trial_totals(trial_id: str, trials: pd.DataFrame) -> dict[str, float]:
    """Return the epochs and training seconds a trial's model took, counting the Hyperband rounds it continued."""
    by_id = trials.set_index("trial_id")
    row = by_id.loc[trial_id]
    epochs = float(_number(row["initial_epoch"]) + _number(row["epochs_trained"]))
    seconds = sum(_number(by_id.loc[tid, "train_seconds"]) for tid in _chain_ids(trial_id, trials)
                  if tid in by_id.index)
    return {"epochs": epochs, "train_seconds": float(seconds)}


def _number(value: Any) -> float:
    return 0.0 if value is None or pd.isna(value) else float(value)


def _plain(value: Any) -> Any:
    """Turn a pandas cell into a plain Python value; NaN becomes None."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def hyperparameter_columns(trials: pd.DataFrame) -> list[str]:
    """Return the hyperparameter columns of a trials table (named like `training.learning_rate`)."""
    return [column for column in trials.columns if column not in TRIAL_COLUMNS]


def same_value(left: Any, right: Any) -> bool:
    """Compare two hyperparameter values; numbers compare with a relative tolerance, because CSV and JSON round."""
    numeric = (int, float, np.integer, np.floating)
    if isinstance(left, numeric) and isinstance(right, numeric) and not isinstance(left, bool | np.bool_) \
            and not isinstance(right, bool | np.bool_):
        return math.isclose(float(left), float(right), rel_tol=1e-6, abs_tol=1e-12)
    return left == right


def baseline_trials(trials: pd.DataFrame, baseline: dict[str, Any]) -> pd.DataFrame:
    """Return the trials whose searched hyperparameters all equal the baseline space's values."""
    columns = [column for column in hyperparameter_columns(trials) if column in baseline]

    def matches(row: pd.Series) -> bool:
        for column in columns:
            value = row[column]
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue  # Not used by this trial's model.
            no_head = same_value(row.get("head.dense_layers", baseline.get("head.dense_layers")), 0)
            if column in HEAD_KEYS and no_head and same_value(baseline.get("head.dense_layers"), 0):
                continue
            if not same_value(value, baseline[column]):
                return False
        return True

    if trials.empty:
        return trials
    return trials[trials.apply(matches, axis=1)]


def fixed_settings(space: dict[str, Any]) -> dict[str, Any]:
    """Return the fixed settings of a resolved space document by `section.key`; searched ones are left out."""
    settings = {}
    for section, table in space.items():
        if isinstance(table, dict):
            settings.update({f"{section}.{key}": value for key, value in table.items() if not isinstance(value, dict)})
    return settings


def compared_settings(best: dict[str, Any], best_space: dict[str, Any], baseline: dict[str, Any] | None,
                      baseline_space: dict[str, Any] | None) -> list[tuple[str, Any, Any]]:
    """Return (setting, best value, baseline value) for every searched hyperparameter and every model setting
    on which the two runs differ; `UNCOMPARED_SETTINGS` are left out, since they do not shape the model."""
    best_values = {**fixed_settings(best_space), **best["hyperparameters"]}
    if baseline is None or baseline_space is None:
        return [(name, value, None) for name, value in best["hyperparameters"].items()]
    baseline_values = {**fixed_settings(baseline_space), **baseline["hyperparameters"]}
    rows = []
    for name in sorted(set(best_values) | set(baseline_values)):
        ours, theirs = best_values.get(name), baseline_values.get(name)
        searched = name in best["hyperparameters"] or name in baseline["hyperparameters"]
        if name.startswith(UNCOMPARED_SETTINGS) or not (searched or not same_value(ours, theirs)):
            continue
        rows.append((name, ours, theirs))
    return rows
