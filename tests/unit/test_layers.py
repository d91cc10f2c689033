"""The shape of the tree: layers import one way, and importing the app builds nothing."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

PRODUCTION = ("schemas", "agents", "streams", "dashboards")
# Which of our packages each layer may import (itself included).
ALLOWED = {
    "schemas": {"schemas"},
    "agents": {"schemas", "agents"},
    "dashboards": {"schemas", "agents", "dashboards"},  # panels read the privacy policy (k)
    "streams": {"schemas", "agents", "streams", "dashboards"},
}
# The CLI's local-stack commands are the one door from production code into infra/ (the dev stack).
STACK_COMMANDS = {"streams/cli/stack.py"}
OURS = {"schemas", "agents", "streams", "dashboards", "infra", "bench", "tests"}


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, top-level package) of every import of ours in a file, at any depth (lazy imports too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name.split(".")[0]) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return [(line, top) for line, top in found if top in OURS]


def _violations() -> list[str]:
    bad = []
    for layer in PRODUCTION:
        for path in sorted((REPO / layer).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            allowed = ALLOWED[layer] | ({"infra"} if rel in STACK_COMMANDS else set())
            bad += [f"{rel}:{line} imports {top}" for line, top in _imports(path) if top not in allowed]
    return bad


def test_layers_import_one_way() -> None:
    assert _violations() == []


def test_the_layer_check_sees_a_lazy_import_back_up(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from streams.settings import load_settings\n    import infra.stack\n")
    assert _imports(bad) == [(2, "streams"), (3, "infra")]


# Runs in a fresh interpreter: records every file opened for writing or outside the installed code, every
# directory made, every socket and database connection, while `import streams.worker.app` runs.
PROBE = r"""
import json, sys
seen = []
def hook(event, args):
    if event == "open":
        path, mode = str(args[0]), str(args[1] or "r")
        if any(m in mode for m in "wax+") or not path.endswith((".py", ".pyc", ".so", ".avsc", ".pth", ".json",
                                                                 ".typed")):
            seen.append(["open", path, mode])
    elif event in ("os.mkdir", "socket.connect", "sqlite3.connect"):
        seen.append([event, str(args[0]) if args else ""])
    elif event == "socket.bind" and args[1][1] != 0:  # port 0: a library probing IPv6 support, not a server
        seen.append([event, str(args[1])])
sys.addaudithook(hook)
import streams.worker.app
print(json.dumps(seen))
"""


def test_importing_the_app_touches_no_file_and_opens_no_connection(tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = {**os.environ, "LINTAS_STATE_DIR": str(state), "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    venv, base = Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()

    def ours(entry: list[str]) -> bool:
        if entry[0] != "open":
            return True  # a directory made, a connection opened
        if entry[1].isdigit() or entry[1] == "/dev/null" or entry[1].startswith(("/usr/share/zoneinfo", "__")):
            return False  # a file descriptor, the time zone database, the editable install's path hook
        path = Path(entry[1]).resolve()
        wrote = any(m in entry[2] for m in "wax+")
        in_code = (path.is_relative_to(venv) or path.is_relative_to(base) or path.suffix in (".py", ".pyc", ".avsc")
                   or ".egg-info" in entry[1])  # libraries, our code and contracts, package metadata
        return wrote or not in_code or path.is_relative_to(state)

    assert [e for e in seen if ours(e)] == []
    assert not state.exists()


@pytest.mark.parametrize("layer", PRODUCTION)
def test_no_reexport_shims_are_left_behind(layer: str) -> None:
    for path in (REPO / layer).rglob("*.py"):
        text = path.read_text()
        assert "re-export" not in text.lower(), path
