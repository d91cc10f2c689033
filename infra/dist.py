"""Install server distributions (jars) from Maven Central with Maven.

Each distribution is a small pom in ``infra/maven/<name>/pom.xml`` whose
dependencies are the server's artifacts. ``mvn dependency:copy-dependencies``
fills a staging directory; only when Maven succeeds is it moved into place and
stamped with the pom's hash, so an interrupted install is redone, never used.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
from pathlib import Path

from infra.errors import PrerequisiteError, StackError

MAVEN_DIR = Path(__file__).parent / "maven"
STAMP = ".installed"


def pom_path(name: str) -> Path:
    """The pom that defines distribution ``name``."""
    return MAVEN_DIR / name / "pom.xml"


def _pom_hash(name: str) -> str:
    return hashlib.sha256(pom_path(name).read_bytes()).hexdigest()


def is_installed(name: str, dest: Path) -> bool:
    """True if ``dest`` holds a complete install of the current pom."""
    stamp = dest / STAMP
    return stamp.is_file() and stamp.read_text().strip() == _pom_hash(name)


def require_tool(tool: str, server: str, hint: str) -> str:
    """Path of an executable the stack needs, or a clear error naming the server that needs it."""
    path = shutil.which(tool)
    if path is None:
        raise PrerequisiteError(server, f"needs `{tool}` on PATH, which is missing; {hint}")
    return path


def install(name: str, dest: Path, log_file: Path, extra_args: tuple[str, ...] = ()) -> bool:
    """Install distribution ``name`` into ``dest`` unless already installed; True if it installed now.

    Stacks started at once (parallel test workers) share ``dest``: one installs, the others wait for it.
    """
    if is_installed(name, dest):
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest.parent / f".{dest.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_installed(name, dest):
            return False  # another stack installed it while we waited
        return _install(name, dest, log_file, extra_args)


def _install(name: str, dest: Path, log_file: Path, extra_args: tuple[str, ...]) -> bool:
    mvn = require_tool("mvn", name, "install Maven (Debian: `apt-get install -y maven`)")
    staging = dest.with_name(dest.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(dest, ignore_errors=True)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        mvn, "-B", "-q", "-f", str(pom_path(name)),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={staging / 'lib'}",
        "-DincludeScope=runtime",
        *extra_args,
    ]
    with open(log_file, "ab") as log:
        result = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=False)  # noqa: S603
    if result.returncode != 0:
        raise StackError(name, f"Maven could not fetch the distribution (exit {result.returncode})", str(log_file))
    (staging / STAMP).write_text(_pom_hash(name) + "\n")
    staging.rename(dest)
    return True
