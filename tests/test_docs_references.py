"""Every pointer to a design decision resolves inside the repository.

Code, configs and docs cite decisions as `docs/<file>.md#<anchor>`; this test checks that each
such file exists and has the anchor (an explicit `<a id=...>`/`id="..."` or a heading's slug),
and that no label of a design document the repository does not ship ("decision D3", "spec
section 3.2", "(B12)", a `../shared` path) is left behind.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LINK = re.compile(r"docs/([\w./-]+?\.md)#([\w-]+)")
DANGLING = [
    (re.compile(r"\bdecisions? D\d+\b", re.IGNORECASE), "decision label"),
    (re.compile(r"\bD(?:[1-9]|1\d)\b(?!\s*[x=*])"), "decision label"),
    (re.compile(r"\bspecs?\s*(?:section|§|\d|macl|metrics|Appendix|R\d)", re.IGNORECASE), "spec section"),
    (re.compile(r"\bspecs/\w"), "path to an unshipped spec"),
    (re.compile(r"\.\./shared\b|/work/shared\b"), "path outside the repository"),
    (re.compile(r"\((?:B\d+|R[1-9])\b[,)]|[(,]\s*(?:B\d+|R[1-9])\)"), "issue label"),
    (re.compile(r"perf_anchors|\b(?:macl|peers|platform|metrics_datasets_users)\.md\b"), "unshipped spec file"),
]


def _files() -> list[Path]:
    try:
        out = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py", "*.md"],
            cwd=ROOT, capture_output=True, text=True, check=True,
        ).stdout.split()
        paths = [ROOT / p for p in out]
    except (OSError, subprocess.CalledProcessError):
        dirs = ("macl_jax", "configs", "data_pipelines", "launch", "benchmarks", "tests", "docs")
        paths = [p for d in dirs for p in (ROOT / d).rglob("*") if p.suffix in (".py", ".md")]
        paths.append(ROOT / "README.md")
    return [p for p in paths if p.is_file() and p.resolve() != Path(__file__).resolve()]


def _slug(heading: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    ids = set(re.findall(r"""\b(?:id|name)=["']([\w-]+)["']""", text))
    ids |= {_slug(h) for h in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, flags=re.MULTILINE)}
    return ids


def test_decision_links_resolve():
    anchors: dict[Path, set[str]] = {}
    missing = []
    links = 0
    for path in _files():
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            for name, anchor in LINK.findall(line):
                links += 1
                target = ROOT / "docs" / name
                if not target.is_file():
                    missing.append(f"{path.relative_to(ROOT)}:{number}: docs/{name} does not exist")
                    continue
                if anchor not in anchors.setdefault(target, _anchors(target)):
                    missing.append(f"{path.relative_to(ROOT)}:{number}: docs/{name} has no anchor #{anchor}")
    assert links > 0, "no docs/*.md#anchor link found: the scan is broken"
    assert not missing, "dangling links:\n" + "\n".join(missing)


def test_no_labels_of_unshipped_documents():
    found = []
    for path in _files():
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            for pattern, what in DANGLING:
                if pattern.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {what}: {line.strip()[:120]}")
                    break
    assert not found, "references that do not resolve inside the repository:\n" + "\n".join(found)
