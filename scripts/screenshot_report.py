"""Render an HTML report in headless Chromium and save a PNG screenshot.

    python scripts/screenshot_report.py reports/run/report.html /tmp/report.png

Chromium runs with a throw-away profile and with its background network
features off; the report itself loads nothing from the network. On Debian,
install it with `apt-get install chromium`.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
WINDOW_SIZE = "1280,2400"
TIMEOUT_SECONDS = 120


def find_chromium() -> str | None:
    """Return the path of a Chromium executable on PATH, or None."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def screenshot(html: Path, png: Path, window_size: str = WINDOW_SIZE) -> Path:
    """Render `html` with headless Chromium into `png`; raise RuntimeError if Chromium is missing or fails."""
    browser = find_chromium()
    if browser is None:
        raise RuntimeError("Chromium not found on PATH; install it (Debian: apt-get install chromium).")
    if not html.is_file():
        raise FileNotFoundError(f"report {html} not found")
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                   "--disable-background-networking", "--disable-component-update", "--disable-sync",
                   "--hide-scrollbars", f"--user-data-dir={profile}", f"--screenshot={png.resolve()}",
                   f"--window-size={window_size}", html.resolve().as_uri()]
        result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=False)
    if result.returncode != 0 or not png.is_file():
        raise RuntimeError(f"Chromium exited with code {result.returncode} and wrote no screenshot {png}:\n"
                           + result.stderr[-2000:])
    return png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", type=Path, help="the report.html to render")
    parser.add_argument("png", type=Path, help="where to write the screenshot")
    parser.add_argument("--window-size", default=WINDOW_SIZE, help="width,height in CSS pixels")
    arguments = parser.parse_args(argv)
    try:
        path = screenshot(arguments.html, arguments.png, arguments.window_size)
    except (RuntimeError, FileNotFoundError, subprocess.TimeoutExpired) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
