"""The documentation's links hold: every relative link in README.md and docs/*.md points at a file that exists
(and an anchor at a heading of it); the README stays a short front door that links every document."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from patchcycle import verdict_docs

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
PAGES = [README, *DOCS]
README_MAX_LINES = 160
# The documents the README is the front door to.
FRONT_DOOR_DOCS = ("patch_cycle.md", "compliance_watch.md", "development.md", "aws_setup.md", "architecture.md")

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
# [text](target) and ![alt](target); the target ends at whitespace (a title may follow) or at ")".
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+[^)]*)?\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)
EXTERNAL = ("http://", "https://", "mailto:")


def _prose(text: str) -> str:
    """The page without its code blocks and code spans (a link there is not a link)."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def links(page: Path) -> list[str]:
    """Every link target of a page that is not external."""
    targets = LINK.findall(_prose(page.read_text()))
    return [target for target in targets if target and not target.startswith(EXTERNAL)]


def slug(heading: str) -> str:
    """A heading's anchor as GitHub spells it: link text kept, lowercase, punctuation dropped, spaces -> "-"."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of a page's headings (a repeated heading gets -1, -2, ... as on GitHub)."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for heading in HEADING.findall(FENCE.sub("", page.read_text())):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def _resolve(page: Path, target: str) -> tuple[Path, str]:
    path, _, anchor = target.partition("#")
    return ((page.parent / path).resolve() if path else page), anchor


def test_the_link_parser_finds_links_and_skips_code() -> None:
    text = 'See [a](docs/a.md), [b](b.md#x "title"), ![i](img.png) and [c](https://x.y).\n`[d](d.md)`\n'
    text += "```\n[e](e.md)\n```\n"
    found = LINK.findall(_prose(text))
    assert found == ["docs/a.md", "b.md#x", "img.png", "https://x.y"]


def test_slugs_follow_github() -> None:
    assert slug("`inspection`: Amazon Inspector's proof") == "inspection-amazon-inspectors-proof"
    assert slug("Accounting: in scope = sum of verdicts") == "accounting-in-scope--sum-of-verdicts"
    assert slug("`make demo`") == "make-demo"
    assert slug("patch_compliance_watch") == "patch_compliance_watch"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_every_relative_link_points_at_a_file_that_exists(page: Path) -> None:
    broken = [target for target in links(page) if not _resolve(page, target)[0].exists()]
    assert broken == [], f"{page.relative_to(REPO)} links to missing files: {broken}"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_every_anchor_names_a_heading(page: Path) -> None:
    broken = []
    for target in links(page):
        path, anchor = _resolve(page, target)
        if anchor and path.suffix == ".md" and path.is_file() and anchor not in anchors(path):
            broken.append(target)
    assert broken == [], f"{page.relative_to(REPO)} links to headings that do not exist: {broken}"


def test_the_readme_is_short() -> None:
    lines = len(README.read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines (at most {README_MAX_LINES}): move detail to docs/"


def test_the_readme_links_every_document() -> None:
    linked = {_resolve(README, target)[0] for target in links(README)}
    missing = [name for name in FRONT_DOOR_DOCS if REPO / "docs" / name not in linked]
    assert missing == [], f"README.md does not link docs/{', docs/'.join(missing)}"


@pytest.mark.parametrize(
    ("settings_class", "page"),
    [
        ("CycleConfig", "patch_cycle.md"),
        ("WatchConfig", "compliance_watch.md"),
        ("BaselinesConfig", "baselines.md"),
    ],
)
def test_every_param_is_documented_where_its_dag_is(settings_class: str, page: str) -> None:
    from patchcycle import config

    text = (REPO / "docs" / page).read_text()
    missing = [name for name in getattr(config, settings_class).settings() if f"`{name}`" not in text]
    assert missing == []


def test_every_reason_code_is_documented() -> None:
    from patchcycle.core.verdicts import ReasonCode

    text = (REPO / "docs" / "report.md").read_text()
    assert [code.value for code in ReasonCode if f"`{code.value}`" not in text] == []


@pytest.mark.parametrize("page", sorted(verdict_docs.PAGES))
def test_the_generated_verdict_tables_are_current(page: str) -> None:
    """`make docs` rewrites them from core/verdicts.py; a page edited by hand (or code changed without it) fails."""
    text = (REPO / "docs" / page).read_text()
    assert verdict_docs.render(text, verdict_docs.PAGES[page]) == text, f"docs/{page} is stale: run `make docs`"


def test_a_page_without_its_markers_is_refused() -> None:
    with pytest.raises(ValueError, match="no '<!-- verdicts: generated"):
        verdict_docs.render("# Verdicts\n\n| Verdict |\n", verdict_docs.PAGES["report.md"])
