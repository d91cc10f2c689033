"""Lintas works installed from its wheel, outside the checkout: every data file it reads ships in the wheel."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

from tests.conftest import REPO

# Everything the worker and the CLI read at start, loaded from the installed package (cwd outside the checkout).
LOADS = r"""
import json, pathlib
import agents.trafficking.config, agents.overstay, agents.privacy, agents.dedup, streams.ops.migrate, dashboards.render
import schemas.contracts
rules = agents.trafficking.config.load_rules(None)
stays = agents.overstay.load_stay_rules(None)
policy = agents.privacy.policy()
thresholds = agents.dedup.ThresholdSet.load(None)
migrations = sorted(p.name for p in streams.ops.migrate.MIGRATIONS.glob("*.sql"))
boards = sorted(p.name for p in dashboards.render.JSON_DIR.glob("*.json"))
files = {m.__name__: m.__file__ for m in (agents.trafficking.config, streams.ops.migrate, schemas.contracts)}
print(json.dumps({"rules": len(rules.rules), "stays": len(stays.rules), "policy": policy.version,
                  "thresholds": thresholds.version, "migrations": migrations, "dashboards": boards,
                  "contracts": len(schemas.contracts.EVENT_CONTRACTS), "files": files}))
"""


def _source(tmp_path: Path) -> Path:
    """The checkout's files (tracked, or new and not ignored) in a clean tree: no stale build/ can leak in."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout.split()
    src = tmp_path / "src"
    for name in listed:
        if (REPO / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    return src


def test_the_wheel_installs_and_runs_outside_the_checkout(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    src = _source(tmp_path)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(src)],
                   check=True, capture_output=True, timeout=300, cwd=tmp_path)
    wheel = next(wheels.glob("lintas-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        shipped = {n for n in z.namelist() if not n.startswith("lintas-")}
    assert {n for n in shipped if n.endswith(".py")} == {
        p.relative_to(src).as_posix() for d in ("schemas", "agents", "streams", "dashboards", "infra")
        for p in (src / d).rglob("*.py")}
    # A fresh venv; its dependencies come from the test's own environment through a .pth line (whose own .pth
    # files, the checkout's editable install among them, are not processed), Lintas itself only from the wheel.
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(env_dir), "platbase": str(env_dir)}))
    (site / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    python = env_dir / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
                   check=True, capture_output=True, timeout=300, cwd=tmp_path)

    helped = subprocess.run([str(env_dir / "bin" / "lintas"), "--help"], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path, check=False)
    assert helped.returncode == 0, helped.stderr
    assert "worker" in helped.stdout and "dedup" in helped.stdout

    loaded = subprocess.run([str(python), "-c", LOADS], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                            check=False)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    got = json.loads(loaded.stdout.strip().splitlines()[-1])
    assert all(Path(f).is_relative_to(site) for f in got["files"].values()), got["files"]
    assert got["rules"] > 10 and got["stays"] > 5 and got["contracts"] >= 6
    assert got["migrations"] == sorted(p.name for p in (REPO / "streams" / "ops" / "migrations").glob("*.sql"))
    assert got["dashboards"] == sorted(p.name for p in (REPO / "dashboards" / "json").glob("*.json"))
    assert got["policy"] and got["thresholds"]
