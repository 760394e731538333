"""Every relative link in the documentation resolves, and every config the README names exists.

Checked files: README.md, docs/**/*.md and the per-model READMEs (rgi_anomalib/**/README.md).
A link is a markdown link ``[text](target)`` (its text may span lines) outside fenced code
blocks; web links (``scheme:``) are not followed. A relative target must name an existing file
or folder, relative to the linking file. Its ``#anchor``, and a bare ``#anchor`` link, must name a
heading of the target markdown file, slugged as GitHub does (lowercase, punctuation dropped,
spaces to hyphens, ``-1``, ``-2`` for repeats): a renamed heading breaks links as surely as a
moved file. Every ``configs/...yaml`` the README mentions anywhere (links, inline code, command
examples) must exist, since a reader copies those commands.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
README = REPO_ROOT / "README.md"

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,}).*?^ {0,3}\1[`~]*[ \t]*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"(`+)(?!`).*?(?<!`)\1(?!`)", re.DOTALL)
# [text](target) or [text](target "title"); the text may contain one level of [brackets]
# (badges: [![alt](img)](target)) and span lines.
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^()\s<>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
CONFIG = re.compile(r"configs/[\w./-]+?\.ya?ml\b")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def documentation_files(root: Path = REPO_ROOT) -> list[Path]:
    files = [root / "README.md", *(root / "docs").rglob("*.md")]
    files += (root / "rgi_anomalib").rglob("README.md")
    return sorted(path for path in files if path.is_file())


def _without_code_blocks(text: str) -> str:
    return FENCE.sub("", text)


def links(text: str) -> list[str]:
    """Targets of the markdown links in ``text`` (not in code blocks or inline code)."""
    return LINK.findall(INLINE_CODE.sub("", _without_code_blocks(text)))


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading (as github-slugger does, on the rendered text)."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links -> their text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "")  # html tags, code marks
    text = re.sub(r"(\*\*|__|\*|(?<!\w)_|_(?!\w)|~~)", "", text)  # emphasis marks
    kept = "".join(
        ch
        for ch in text.lower()
        if ch in " -_" or unicodedata.category(ch)[0] in "LNM"  # letters, numbers, marks
    )
    return kept.replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    seen: dict[str, int] = {}
    result = set()
    for heading in HEADING.findall(_without_code_blocks(path.read_text(encoding="utf-8"))):
        slug = github_slug(heading)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        result.add(slug if count == 0 else f"{slug}-{count}")
    return frozenset(result)


def broken_links(path: Path) -> list[str]:
    """Each relative link of ``path`` that names no file, folder or heading, with the reason."""
    broken = []
    for target in links(path.read_text(encoding="utf-8")):
        if SCHEME.match(target):
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        if not resolved.exists():
            broken.append(f"{target}: no such file {resolved}")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading #{anchor} in {resolved.name}")
    return broken


def test_the_checker_finds_what_it_must(tmp_path: Path) -> None:
    """It finds multi-line and titled links, skips code, slugs headings as GitHub does."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "other.md").write_text(
        "# Results at a glance\n## `quick.yaml`: R-RGI vs. PatchCore (0.341)\n"
        "## Results at a glance\n"
    )
    page = tmp_path / "README.md"
    page.write_text(
        "[ok](docs/other.md#results-at-a-glance) [two\nlines](docs/other.md 'x') "
        '[titled](docs/other.md "t") [dup](docs/other.md#results-at-a-glance-1) '
        "[code heading](docs/other.md#quickyaml-r-rgi-vs-patchcore-0341) [web](https://x.org/a) "
        "[gone](docs/missing.md) [bad anchor](docs/other.md#nope) [self](#nowhere)\n"
        "`[not a link](nowhere.md)`\n```\n[not a link either](nowhere.md)\n```\n"
    )
    assert documentation_files(tmp_path) == [tmp_path / "README.md", tmp_path / "docs/other.md"]
    assert [b.split(":")[0] for b in broken_links(page)] == [
        "docs/missing.md",
        "docs/other.md#nope",
        "#nowhere",
    ]
    assert CONFIG.findall("run `configs/benchmark/quick.yaml`, configs/a-b/c_d.yml.") == [
        "configs/benchmark/quick.yaml",
        "configs/a-b/c_d.yml",
    ]


@pytest.mark.parametrize("path", documentation_files(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_relative_links_resolve(path: Path) -> None:
    broken = broken_links(path)
    assert not broken, f"broken links in {path.relative_to(REPO_ROOT)}:\n" + "\n".join(broken)


def test_every_config_the_readme_names_exists() -> None:
    named = sorted(set(CONFIG.findall(README.read_text(encoding="utf-8"))))
    assert named, "README.md names no configs/...yaml (has the pattern gone stale?)"
    missing = [name for name in named if not (REPO_ROOT / name).is_file()]
    assert not missing, f"README.md names configs that do not exist: {missing}"
