"""The companion book (``book/``): every reference resolves, and every chapter section has its page.

The reference syntax is defined in ``book/README.md``: a relative Markdown link whose target is a file of
the repository, with an optional ``#fragment``:

* ``.py`` files: the fragment names a top-level function, class or assigned name, or ``Class.member``,
  found with ``ast`` (an import is not a definition); in ``tests/test_*.py`` it must name a test;
  when the link text is a code span it must end with the fragment's last part (``F.interpolate`` →
  ``#interpolate``);
* ``.md`` files: the fragment, if any, is the anchor of one of its headings;
* notebooks and other files: no fragment, the file must exist. A notebook that has not been written yet
  is a failure, not a skip.

Paths written in running text as code (``minseg/losses/dice.py``, ``tests/test_conv.py::test_x``) are
checked the same way. Finally: pages 7.1–7.8 exist, the index links every page (the sections in order),
each section page links code, tests and a notebook, the main README links the book, and — when the
chapter is on disk (``../shared/chapter7.md`` or ``$MINSEG_CHAPTER``) — no run of ten words is shared with it.
"""

from __future__ import annotations

import ast
import functools
import os
import re
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
INDEX = BOOK / "README.md"
SECTIONS = [f"7.{number}" for number in range(1, 9)]
CHECKED_ROOTS = ("minseg", "tests", "notebooks", "benchmarks", "book")

FENCE = re.compile(r"^(`{3,}|~{3,})[^\n]*\n.*?^\1[ \t]*$", re.M | re.S)
LINK = re.compile(r"\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\(\s*<?([^()\s<>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
LINK_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.M)
CODE_SPAN = re.compile(r"(`+)(.+?)(?<!`)\1(?!`)", re.S)
CODE_PATH = re.compile(r"(?<![\w./-])((?:%s)/[\w./-]*)(?:::([\w.]+))?" % "|".join(CHECKED_ROOTS))
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)


class Reference(NamedTuple):
    page: Path
    line: int
    label: str
    target: str
    base: Path  # the folder ``target`` is relative to: the page's for links, the repository's for code paths

    def __str__(self):
        return f"{self.page.relative_to(ROOT)}:{self.line}: [{self.label}]({self.target})"


def _without_fences(text: str) -> str:
    """The page with fenced code blocks blanked out (line numbers kept): links there are not links."""
    return FENCE.sub(lambda match: "\n" * match.group(0).count("\n"), text)


def _line_of(text: str, position: int) -> int:
    return text.count("\n", 0, position) + 1


def _pages() -> list[Path]:
    return sorted(BOOK.glob("*.md"))


def _references(page: Path) -> list[Reference]:
    text = _without_fences(page.read_text(encoding="utf-8"))
    found = [Reference(page, _line_of(text, m.start()), m.group(1), m.group(2), page.parent)
             for m in LINK.finditer(text)]
    found += [Reference(page, _line_of(text, m.start()), "", m.group(1), page.parent)
              for m in LINK_DEFINITION.finditer(text)]
    return found


def _code_paths(page: Path) -> list[Reference]:
    """Repository paths written as inline code in running text, e.g. `minseg/inference/crf.py` or `tests/x.py::test_y`."""
    text = _without_fences(page.read_text(encoding="utf-8"))
    found = []
    for span in CODE_SPAN.finditer(text):
        for match in CODE_PATH.finditer(span.group(2)):
            target = match.group(1) + (f"#{match.group(2)}" if match.group(2) else "")
            found.append(Reference(page, _line_of(text, span.start()), match.group(0), target, ROOT))
    return found


# ------------------------------------------------------------------------------------------ resolving
def _top_level(body) -> list:
    """Statements at module level, looking inside if/try/with blocks (not inside functions or classes)."""
    statements = []
    for node in body:
        statements.append(node)
        if isinstance(node, (ast.If, ast.Try, ast.With)):
            for field in ("body", "orelse", "finalbody"):
                statements += _top_level(getattr(node, field, []))
            for handler in getattr(node, "handlers", []):
                statements += _top_level(handler.body)
    return statements


def _assigned_names(node) -> list[str]:
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    names = []
    for target in targets:
        if isinstance(target, ast.Name):
            names.append(target.id)
        elif isinstance(target, (ast.Tuple, ast.List)):
            names += [element.id for element in target.elts if isinstance(element, ast.Name)]
    return names


def _names_in(body) -> dict:
    """name → the node that defines it (functions, classes, assignments) among ``body``'s statements."""
    names = {}
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names[node.name] = node
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            names.update(dict.fromkeys(_assigned_names(node), node))
    return names


@functools.lru_cache(maxsize=None)
def _definitions(path: Path) -> dict:
    return _names_in(_top_level(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)).body))


def _symbol_problem(path: Path, symbol: str) -> str | None:
    """Why ``symbol`` (``name`` or ``Class.member``) is not defined in the Python file ``path``, or None."""
    head, _, member = symbol.partition(".")
    definitions = _definitions(path)
    if head not in definitions:
        return f"{head!r} is not defined at the top level of {path.relative_to(ROOT)}"
    if member:
        node = definitions[head]
        if not isinstance(node, ast.ClassDef):
            return f"{head!r} in {path.relative_to(ROOT)} is not a class, so it has no member {member!r}"
        if "." in member or member not in _names_in(node.body):
            return f"class {head} in {path.relative_to(ROOT)} defines no {member!r}"
    in_tests = path.parent == ROOT / "tests" and path.name.startswith("test_")
    if in_tests and not symbol.split(".")[-1].startswith("test"):
        return f"{symbol!r} in {path.relative_to(ROOT)} is not a test function"
    return None


@functools.lru_cache(maxsize=None)
def _anchors(page: Path) -> frozenset:
    """GitHub's heading anchors: lower case, punctuation except '-' and '_' dropped, spaces → '-'."""
    text = _without_fences(page.read_text(encoding="utf-8"))
    anchors, seen = set(), {}
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return frozenset(anchors)


def _problem(reference: Reference) -> str | None:
    """Why ``reference`` does not resolve, or None when it does."""
    target = reference.target
    if EXTERNAL.match(target):
        return None  # a web address: not checked here
    location, _, fragment = target.partition("#")
    path = (reference.base / location).resolve() if location else reference.page
    try:
        path.relative_to(ROOT)
    except ValueError:
        return f"{target!r} points outside the repository"
    if not path.exists():
        kind = "notebook (not written yet?)" if path.suffix == ".ipynb" else "file"
        return f"{kind} {path.relative_to(ROOT)} does not exist"
    if not fragment:
        return None
    if path.is_dir():
        return f"{target!r}: a folder cannot have a #fragment"
    if path.suffix == ".py":
        problem = _symbol_problem(path, fragment)
        if problem:
            return problem
        label = reference.label.strip()
        if re.fullmatch(r"`[^`]+`", label) and not label.strip("`").endswith(fragment.split(".")[-1]):
            return f"the link text {label} does not name {fragment!r}"
        return None
    if path.suffix == ".md":
        return None if fragment in _anchors(path) else f"{path.relative_to(ROOT)} has no heading #{fragment}"
    return f"{target!r}: only .py and .md targets may carry a #fragment"


# ------------------------------------------------------------------------------------------ the tests
def _broken(references) -> list[str]:
    return [f"{reference}: {problem}" for reference in references for problem in [_problem(reference)] if problem]


@pytest.mark.parametrize("page", _pages(), ids=lambda page: page.name)
def test_every_link_resolves(page):
    broken = _broken(_references(page))
    if broken:
        pytest.fail(f"{len(broken)} broken reference(s):\n" + "\n".join(broken), pytrace=False)


@pytest.mark.parametrize("page", _pages(), ids=lambda page: page.name)
def test_every_path_written_as_code_resolves(page):
    broken = _broken(_code_paths(page))
    if broken:
        pytest.fail(f"{len(broken)} broken path(s):\n" + "\n".join(broken), pytrace=False)


def _section_pages() -> dict:
    return {section: sorted(BOOK.glob(f"{section}-*.md")) for section in SECTIONS}


def test_every_chapter_section_has_exactly_one_page():
    pages = _section_pages()
    for section, found in pages.items():
        assert len(found) == 1, f"section {section}: expected one page book/{section}-<name>.md, found {found}"
        first_line = found[0].read_text(encoding="utf-8").splitlines()[0]
        assert first_line.startswith(f"# {section} "), f"{found[0].name} should start with '# {section} …'"


def test_the_index_links_every_page_and_the_sections_in_order():
    linked = []
    for reference in _references(INDEX):
        path = (BOOK / reference.target.partition("#")[0]).resolve()
        if path.parent == BOOK and path.suffix == ".md" and path != INDEX and path not in linked:
            linked.append(path)
    unlinked = [page.name for page in _pages() if page != INDEX and page not in linked]
    assert not unlinked, f"book/README.md does not link {unlinked}"
    sections = [found[0] for found in _section_pages().values() if len(found) == 1]
    in_order = [page for page in linked if page in sections]
    assert in_order == sections, f"book/README.md should link {[p.name for p in sections]} in this order; " \
                                 f"it links {[p.name for p in in_order]}"


@pytest.mark.parametrize("section", SECTIONS)
def test_each_page_links_code_tests_and_a_notebook(section):
    pages = _section_pages()[section]
    assert pages, f"no page for section {section}"
    targets = [(pages[0].parent / r.target.partition("#")[0]).resolve() for r in _references(pages[0])]
    folders = {name: ROOT / name for name in ("minseg", "tests", "notebooks")}
    kinds = {name: [t for t in targets if folder in t.parents] for name, folder in folders.items()}
    kinds["tests"] = [t for t in kinds["tests"] if t.name.startswith("test_")]
    kinds["notebooks"] = [t for t in kinds["notebooks"] if t.suffix == ".ipynb"]
    missing = [name for name, found in kinds.items() if not found]
    assert not missing, f"{pages[0].name} links no {', '.join(missing)}"


def test_the_main_readme_links_the_book():
    targets = [reference.target.partition("#")[0] for reference in _references(ROOT / "README.md")]
    assert any((ROOT / target).resolve() == INDEX for target in targets), "README.md should link book/README.md"


def _chapter() -> Path | None:
    candidates = [os.environ.get("MINSEG_CHAPTER"), ROOT.parent / "shared" / "chapter7.md"]
    return next((Path(path) for path in candidates if path and Path(path).is_file()), None)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def test_no_ten_word_run_is_copied_from_the_chapter():
    chapter = _chapter()
    if chapter is None:
        pytest.skip("the chapter text is not on disk (../shared/chapter7.md or $MINSEG_CHAPTER)")
    words = _words(chapter.read_text(encoding="utf-8"))
    runs = {tuple(words[i:i + 10]) for i in range(len(words) - 9)}
    copied = []
    for page in _pages():
        page_words = _words(page.read_text(encoding="utf-8"))
        copied += [f"{page.name}: {' '.join(page_words[i:i + 10])}" for i in range(len(page_words) - 9)
                   if tuple(page_words[i:i + 10]) in runs]
    if copied:
        pytest.fail("runs of ten words shared with the chapter:\n" + "\n".join(copied), pytrace=False)
