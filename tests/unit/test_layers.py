"""The shape of the tree: layers import one way, rooms keep to themselves, and importing the app builds nothing."""

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
# Rooms of streams/ and the rooms each may import (itself included). "shared" is streams/'s own top level:
# settings, clients, topics, key stores... A post never imports the worker; ops commands never reach into
# the worker; the console reads through ops; the CLI is the top and may call any room.
ROOMS = ("worker", "post", "ops", "sim", "console", "cli")
ROOM_ALLOWED = {
    "shared": {"shared"},
    "worker": {"shared", "worker"},
    "post": {"shared", "post"},
    "ops": {"shared", "ops"},
    "sim": {"shared", "sim"},
    "console": {"shared", "ops", "console"},
    "cli": {"shared", *ROOMS},
}
MAX_LINES = 400  # past this a module of streams/ usually holds two ideas
LONGER = {}  # path → why it stays one module; empty now


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, dotted module) of every import of ours in a file, at any depth (lazy imports too).

    ``from streams import clients`` counts as ``streams.clients``: the names imported from a package are modules.
    """
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module in OURS:
                found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, node.module))
    return [(line, name) for line, name in found if name.split(".")[0] in OURS]


def _room(module: str) -> str:
    """The room of a module of streams/ (``streams.worker.app`` → worker; ``streams.settings`` → shared)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ROOMS else "shared"


def _violations() -> list[str]:
    bad = []
    for layer in PRODUCTION:
        for path in sorted((REPO / layer).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            allowed = ALLOWED[layer] | ({"infra"} if rel in STACK_COMMANDS else set())
            here = _room(".".join(path.relative_to(REPO).with_suffix("").parts)) if layer == "streams" else ""
            for line, module in _imports(path):
                top = module.split(".")[0]
                if top not in allowed:
                    bad.append(f"{rel}:{line} imports {module}")
                elif here and top == "streams" and _room(module) not in ROOM_ALLOWED[here]:
                    bad.append(f"{rel}:{line} ({here}) imports {module} ({_room(module)})")
    return bad


def test_layers_import_one_way_and_rooms_keep_to_themselves() -> None:
    assert _violations() == []


def test_the_layer_check_sees_a_lazy_import_back_up(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from streams.settings import load_settings\n    import infra.stack\n")
    assert _imports(bad) == [(2, "streams.settings"), (3, "infra.stack")]


def test_the_room_check_sees_a_post_reaching_into_the_worker(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    post = tmp_path / "streams" / "post"
    post.mkdir(parents=True)
    (post / "x.py").write_text("from streams import clients\nfrom streams.worker import app\n")
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "PRODUCTION", ("streams",))
    assert _violations() == ["streams/post/x.py:2 (post) imports streams.worker (worker)"]


def test_no_module_of_streams_holds_two_ideas() -> None:
    long = {p.relative_to(REPO).as_posix(): n for p in (REPO / "streams").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert {p: n for p, n in long.items() if p not in LONGER} == {}


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
