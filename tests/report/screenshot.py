"""Screenshot an HTML file in headless Chromium (a check that the report renders).

Usable as a module (:func:`find_chromium`, :func:`screenshot`) and as a script::

    python tests/report/screenshot.py report.html /tmp/report.png [--width 1280 --height 3000]

Chromium runs with no network-facing background services, no GPU, a throwaway profile,
and ``--no-sandbox`` (needed when running as root in a container).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = ["find_chromium", "screenshot"]

_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_chromium() -> str | None:
    """The path of a Chromium/Chrome executable on ``PATH``, or ``None``."""
    for name in _NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def screenshot(html_path: str | Path, png_path: str | Path, width: int = 1280, height: int = 3000,
               timeout: float = 120.0) -> Path:
    """Render ``html_path`` in headless Chromium and save a ``width × height`` PNG.

    Raises
    ------
    FileNotFoundError
        If no Chromium is installed or ``html_path`` does not exist.
    RuntimeError
        If Chromium exits with an error or writes no screenshot.
    """
    exe = find_chromium()
    if exe is None:
        raise FileNotFoundError("no chromium on PATH (Debian: apt-get install chromium)")
    html_path, png_path = Path(html_path).resolve(), Path(png_path).resolve()
    if not html_path.is_file():
        raise FileNotFoundError(f"{html_path} does not exist")
    png_path.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
               f"--user-data-dir={profile}", f"--screenshot={png_path}", f"--window-size={width},{height}",
               html_path.as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0 or not png_path.is_file():
        raise RuntimeError(f"chromium failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return png_path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html")
    parser.add_argument("png")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=3000)
    args = parser.parse_args(argv)
    print(screenshot(args.html, args.png, args.width, args.height))


if __name__ == "__main__":
    main()
