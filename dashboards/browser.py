"""Debian's headless Chromium, for the dashboards preview: a screenshot and the DOM after the page loaded."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from schemas.errors import LintasError

# Flags for a closed network and a root user: no sandbox, no background calls home, a throwaway profile.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--force-device-scale-factor=1")


class BrowserMissing(LintasError):
    """Chromium is not installed (``infra/setup-system.sh`` installs Debian's ``chromium``)."""


def chromium() -> str:
    """The Chromium executable."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise BrowserMissing("chromium is not installed: run ./infra/setup-system.sh (Debian package chromium)")


def _run(page: Path, *extra: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="lintas-chromium-") as profile:
        return subprocess.run(  # noqa: S603 - our own flags and a file: URI of our own page
            [chromium(), *FLAGS, f"--user-data-dir={profile}", *extra, page.resolve().as_uri()],
            capture_output=True, text=True, timeout=timeout_s, check=False)


def screenshot(page: Path, out: Path, width: int = 1600, height: int = 6000) -> Path:
    """A full-height PNG of ``page`` as Chromium draws it."""
    out.unlink(missing_ok=True)
    done = _run(page, f"--screenshot={out.resolve()}", f"--window-size={width},{height}",
                "--virtual-time-budget=10000")
    if not out.exists():
        raise LintasError(f"chromium wrote no screenshot (exit {done.returncode}): {done.stderr[-500:]}")
    return out


def rendered_dom(page: Path) -> str:
    """The page's DOM after Chromium loaded it, images included."""
    done = _run(page, "--dump-dom", "--virtual-time-budget=10000")
    if done.returncode != 0 or "<html" not in done.stdout:
        raise LintasError(f"chromium could not load {page.name} (exit {done.returncode}): {done.stderr[-500:]}")
    return done.stdout
