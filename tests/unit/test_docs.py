"""The README is the door and docs/ the house: the site builds with every link and anchor found, the door stays short."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from markdown.extensions.toc import slugify

from tests.conftest import REPO

README_MAX_LINES = 200
# [text](target) outside code; the target ends at whitespace or the closing parenthesis
LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")


def relative_file_links(markdown: str) -> list[str]:
    """The link targets of a Markdown text that name a file of the repository (no scheme, no bare anchor)."""
    text = INLINE_CODE.sub("", FENCE.sub("", markdown))
    targets = [m.group(1) for m in LINK.finditer(text)]
    return [t for t in targets if not t.startswith("#") and not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", t)]


def anchors(markdown: str) -> set[str]:
    """The anchors of a Markdown page's headings, as mkdocs (and, for plain headings, GitHub) makes them."""
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*#*$", FENCE.sub("", markdown), re.MULTILINE)
    return {slugify(re.sub(r"[`*]", "", h), "-") for h in headings}


def missing_targets(markdown: str, base: Path) -> list[str]:
    """Relative links of ``markdown`` whose file does not exist under ``base``, or whose page lacks the anchor."""
    missing = []
    for target in relative_file_links(markdown):
        path, _, anchor = target.partition("#")
        file = base / path
        if not file.exists() or (anchor and file.suffix == ".md" and anchor not in anchors(file.read_text())):
            missing.append(target)
    return missing


def test_the_docs_site_builds_strictly(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (tmp_path / "site" / "index.html").exists()


def test_the_strict_build_fails_on_a_broken_anchor(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# Home\n\n[there](other.md#no-such-heading)\n")
    (docs / "other.md").write_text("# Other\n")
    config = (REPO / "mkdocs.yml").read_text()
    config = re.sub(r"(?ms)^nav:.*", "", config)  # the real nav names pages this tree does not have
    (tmp_path / "mkdocs.yml").write_text(config)
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode != 0
    assert "no-such-heading" in done.stdout + done.stderr


def test_every_relative_link_of_the_readme_resolves() -> None:
    readme = (REPO / "README.md").read_text()
    assert relative_file_links(readme), "the README links to no docs page"
    assert missing_targets(readme, REPO) == []


def test_the_link_check_sees_a_broken_link(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "here.md").write_text("# Here\n\n## When `ClickHouse` is down\n")
    text = ("[ok](docs/here.md#here) [ok](docs/here.md#when-clickhouse-is-down) [gone](docs/gone.md) "
            "[no anchor](docs/here.md#there) [web](https://example.org/x.md) [anchor](#top)\n"
            "`[in code](docs/code.md)`\n```\n[fenced](docs/fenced.md)\n```\n")
    assert missing_targets(text, tmp_path) == ["docs/gone.md", "docs/here.md#there"]


def test_the_readme_is_a_door_not_the_house() -> None:
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move the detail into docs/"
