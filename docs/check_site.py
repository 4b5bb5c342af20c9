"""Check a built site: no unrendered reStructuredText or math, and every internal link resolves.

Run after ``mkdocs build --strict --site-dir SITE`` (CI does, in ``.ci/run``)::

    python docs/check_site.py SITE

It reads every HTML page of ``SITE`` and fails (exit status 1, one line per problem) on

- a reStructuredText role or directive left as text (``:math:``, ``:func:``, ``:class:``,
  ``:meth:``, ``:mod:``, ``.. math::``): a docstring written for Sphinx, not Markdown;
- a ``$`` in the text outside math and code: math that arithmatex did not recognise (a space
  after the opening ``$``, an unclosed pair, ...), which the reader would see raw;
- an element left by arithmatex that does not hold ``\\(...\\)`` or ``\\[...\\]``;
- a relative link (``href``/``src``) to a file that is not in the site, or to an anchor that is
  not on its page.

When ``node`` is on the PATH, every formula is also typeset with the KaTeX shipped in
``docs/assets/katex`` with ``throwOnError``, so a formula that KaTeX cannot parse (it would show in
red on the page) fails too; without ``node`` that step is skipped and says so. Only the standard
library is used.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

RST = re.compile(r":(?:math|func|class|meth|mod):|\.\. math::")
# text inside these elements is not prose: code shows roles and dollars on purpose
VERBATIM = {"code", "pre", "script", "style", "kbd", "samp", "textarea"}
VOID = {
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
    "track", "wbr",
}


class Page(HTMLParser):
    """The parts of one page the checks need: prose text, math sources, links and ids."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, bool, bool]] = []  # (tag, verbatim, math)
        self.prose: list[tuple[int, str]] = []
        self.math: list[tuple[int, str, str]] = []  # (line, source, tag)
        self.links: list[tuple[int, str]] = []
        self.ids: set[str] = set()
        self._math_text: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if attrs.get("name") and tag == "a":
            self.ids.add(attrs["name"])
        for key in ("href", "src"):
            if attrs.get(key) is not None and tag in {"a", "img", "link", "script", "source"}:
                self.links.append((self.getpos()[0], attrs[key]))
        if tag in VOID:
            return
        parent_verbatim, parent_math = self.stack[-1][1:] if self.stack else (False, False)
        verbatim = tag in VERBATIM or parent_verbatim
        math = "arithmatex" in (attrs.get("class") or "").split()
        if math and self._math_text is None:
            self._math_text = []
            self._math_start = (self.getpos()[0], tag)
        self.stack.append((tag, verbatim, math or parent_math))

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        while self.stack:
            open_tag, _, _ = self.stack.pop()
            if open_tag == tag:
                break
        if self._math_text is not None and not (self.stack and self.stack[-1][2]):
            line, math_tag = self._math_start
            self.math.append((line, "".join(self._math_text).strip(), math_tag))
            self._math_text = None

    def handle_data(self, data):
        if self._math_text is not None:
            self._math_text.append(data)
        elif not (self.stack and self.stack[-1][1]):
            self.prose.append((self.getpos()[0], data))


def check_page(path: Path, page: Page, site: Path, pages: dict[Path, Page]) -> list[str]:
    name = path.relative_to(site)
    problems = []
    for line, text in page.prose:
        for match in RST.finditer(text):
            problems.append(
                f"{name}:{line}: raw reStructuredText {match.group(0)!r}: {text.strip()[:80]!r}"
            )
        if "$" in text:
            problems.append(f"{name}:{line}: unrendered '$' in the text: {text.strip()[:80]!r}")
    for line, source, tag in page.math:
        inline = source.startswith("\\(") and source.endswith("\\)")
        display = source.startswith("\\[") and source.endswith("\\]")
        if not (inline or display):
            problems.append(f"{name}:{line}: math element <{tag}> holds {source[:60]!r}")
    for line, link in page.links:
        parts = urlsplit(link)
        if parts.scheme or parts.netloc or link.startswith(("mailto:", "data:", "javascript:")):
            continue
        if parts.path.startswith("/"):
            target = site / unquote(parts.path).lstrip("/")  # 404.html links from the site root
        elif parts.path:
            target = path.parent / unquote(parts.path)
        else:
            target = path
        target = target.resolve()
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file() or site.resolve() not in target.parents:
            problems.append(f"{name}:{line}: link {link!r} points to nothing in the site")
            continue
        if parts.fragment and target.suffix == ".html":
            ids = pages[target].ids if target in pages else set()
            if unquote(parts.fragment) not in ids:
                problems.append(f"{name}:{line}: link {link!r}: no id {parts.fragment!r} there")
    return problems


KATEX_CHECK = """
const katex = require(process.argv[1]);
const formulas = JSON.parse(require("fs").readFileSync(0, "utf8"));
const failures = [];
for (const [where, tex, display] of formulas) {
  try { katex.renderToString(tex, {displayMode: display, throwOnError: true}); }
  catch (error) {
    const first = error.message.split("\\n")[0];
    failures.push(where + ": KaTeX cannot typeset " + JSON.stringify(tex.slice(0, 60)) + ": "
                  + first);
  }
}
console.log(JSON.stringify(failures));
"""


def check_katex(site: Path, pages: dict[Path, Page]) -> list[str]:
    node = shutil.which("node")
    katex = Path(__file__).resolve().parent / "assets" / "katex" / "katex.min.js"
    if node is None:
        print("check_site: node is not on the PATH, formulas not typeset (KaTeX check skipped)")
        return []
    formulas = [
        (f"{path.relative_to(site)}:{line}", source[2:-2], source.startswith("\\["))
        for path, page in pages.items()
        for line, source, _ in page.math
        if source.startswith(("\\(", "\\["))
    ]
    result = subprocess.run(
        [node, "-e", KATEX_CHECK, str(katex)],
        input=json.dumps(formulas), capture_output=True, text=True, check=True,
    )
    print(f"check_site: {len(formulas)} formulas typeset by KaTeX")
    return json.loads(result.stdout)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python docs/check_site.py SITE_DIR", file=sys.stderr)
        return 2
    site = Path(argv[0]).resolve()
    html = sorted(site.rglob("*.html"))
    if not html:
        print(f"check_site: no HTML under {site}", file=sys.stderr)
        return 2
    pages = {}
    for path in html:
        page = Page()
        page.feed(path.read_text(encoding="utf-8"))
        page.close()
        pages[path.resolve()] = page
    problems = [p for path, page in pages.items() for p in check_page(path, page, site, pages)]
    problems += check_katex(site, pages)
    for problem in problems:
        print(problem)
    links = sum(len(page.links) for page in pages.values())
    print(f"check_site: {len(pages)} pages, {links} links, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
