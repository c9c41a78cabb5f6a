"""The documentation builds as a static site with every internal link and anchor resolving."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_docs_build_with_no_broken_links_or_anchors(tmp_path):
    pytest.importorskip("mkdocs")
    completed = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert (tmp_path / "api" / "index.html").is_file()


def test_every_page_is_in_the_site_navigation():
    yaml = pytest.importorskip("yaml")

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())

    def pages(node):
        if isinstance(node, str):
            yield node
        elif isinstance(node, dict):
            for value in node.values():
                yield from pages(value)
        elif isinstance(node, list):
            for value in node:
                yield from pages(value)

    listed = set(pages(config["nav"]))
    on_disk = {path.name for path in (ROOT / "docs").glob("*.md")}
    assert listed == on_disk
