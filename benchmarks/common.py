"""Helpers shared by the benchmark scripts: machine facts, load average, RSS, medians and tables.

Every benchmark prints the machine and the load average at its start and end,
because the machine it was written on has 2 CPU cores shared with other work,
so absolute figures move from run to run. Benchmarks compare variants by
interleaving their repetitions (A B A B ...) and reporting the ratio of the
medians, which survives a steady background load better than any single
figure.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
#: The real face photos, next to the repository (7,591 JPEGs of 200x200 px).
FACES_ROOT = REPO_ROOT.parent / "shared" / "faces"

# TensorFlow logs a screenful of notices at import; benchmarks print tables.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Make `import tuner` work when a script runs as `python benchmarks/NAME.py` without an install.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


def load_average() -> tuple[float, float, float]:
    """Return the 1, 5 and 15 minute load averages."""
    return os.getloadavg()


def format_load(load: tuple[float, float, float]) -> str:
    return f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (1, 5, 15 min)"


def cpu_model() -> str:
    """Return the CPU model name as `lscpu` prints it, or from /proc/cpuinfo."""
    try:
        output = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        output = ""
    for line in output.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_total_gib() -> float | None:
    """Return the machine's memory in GiB from /proc/meminfo, or None off Linux."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        return None
    return None


def rss_mb(pid: int | None = None) -> float:
    """Return the resident set size of a process (this one by default) in MiB.

    Uses psutil when it is installed, else VmRSS from /proc/PID/status.
    """
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        return psutil.Process(pid).memory_info().rss / 2**20
    status = Path(f"/proc/{pid or 'self'}/status").read_text()
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"VmRSS not found in /proc/{pid or 'self'}/status")


def private_mb() -> float:
    """Return this process's private memory (clean and dirty) in MiB, from /proc/self/smaps_rollup.

    Forked processes share their parent's pages until they write to them, so
    RSS counts the shared pages once per process and private memory does not.
    """
    total_kib = 0
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith(("Private_Clean:", "Private_Dirty:")):
            total_kib += int(line.split()[1])
    return total_kib / 1024


def machine_facts(tensorflow: bool = True) -> dict[str, Any]:
    """Return the facts every benchmark prints: CPUs, CPU model, memory, Python and TensorFlow versions."""
    facts: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
        "memory_gib": round(memory_total_gib() or 0.0, 1),
        "python": platform.python_version(),
    }
    if tensorflow:
        import keras
        import tensorflow as tf

        facts["tensorflow"] = tf.__version__
        facts["keras"] = keras.__version__
        facts["gpus"] = [device.name for device in tf.config.list_physical_devices("GPU")]
    return facts


class LoadLog:
    """Load averages at a benchmark's start and end, printed with its results."""

    def __init__(self) -> None:
        self.start = load_average()
        self.started = time.monotonic()
        self.end: tuple[float, float, float] | None = None

    def finish(self) -> None:
        self.end = load_average()

    def lines(self) -> list[str]:
        lines = [f"load average at start: {format_load(self.start)}"]
        if self.end is not None:
            lines.append(f"load average at end:   {format_load(self.end)}")
        lines.append(f"benchmark wall time: {time.monotonic() - self.started:.0f} s")
        return lines


def print_header(title: str, arguments: dict[str, Any], facts: dict[str, Any]) -> None:
    """Print the benchmark's name, its arguments and the machine."""
    print(f"== {title} ==")
    print("arguments: " + ", ".join(f"{key}={value}" for key, value in arguments.items()))
    machine = (f"machine: {facts['cpus']} CPUs ({facts['cpu_model']}), {facts['memory_gib']} GiB, "
               f"Python {facts['python']}")
    if "tensorflow" in facts:
        machine += f", TensorFlow {facts['tensorflow']}, Keras {facts['keras']}, GPUs {facts['gpus'] or 'none'}"
    print(machine)
    sys.stdout.flush()


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Return a Markdown table, so the output can be pasted into docs/benchmarks.md."""
    cells = [[_format_cell(value) for value in row] for row in rows]
    widths = [max(len(header), *(len(row[index]) for row in cells)) for index, header in enumerate(headers)]
    lines = ["| " + " | ".join(header.ljust(width) for header, width in zip(headers, widths)) + " |",
             "| " + " | ".join("-" * width for width in widths) + " |"]
    for row in cells:
        lines.append("| " + " | ".join(cell.rjust(width) for cell, width in zip(row, widths)) + " |")
    return "\n".join(lines)


def _format_cell(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "n/a"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
    return str(value)


def write_json(path: str | None, data: dict[str, Any]) -> None:
    """Write the results to `path` as JSON when a path is given."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
        print(f"results written to {path}")


def faces_subset(count: int, seed: int = 0, root: Path = FACES_ROOT):
    """Return `count` rows (path, age) of the real face photos, drawn at random with `seed`.

    The photos are only listed, not decoded: checking all 7,591 of them would
    add a minute to every benchmark.
    """
    from tuner.data import DatasetLayout, load_dataset

    if not root.is_dir():
        raise SystemExit(f"The face photos were not found at {root}. Pass --faces DIR with the dataset folder "
                         "(labels.csv and final_files/).")
    frame = load_dataset(DatasetLayout(root=root), verify_images=False)
    if count > len(frame):
        raise SystemExit(f"Asked for {count} photos but {root} has {len(frame)}.")
    return frame.sample(n=count, random_state=seed).reset_index(drop=True)
