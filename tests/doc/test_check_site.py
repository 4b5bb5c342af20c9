"""docs/check_site.py finds each problem it promises in a hand-made site, none in a clean one."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check_site = load(ROOT / "docs" / "check_site.py", "check_site")
tables = load(ROOT / "tests" / "benchmarks" / "write_docs_tables.py", "write_docs_tables")

CLEAN = """<html><body><h2 id="top">T</h2>
<p>Inline <span class="arithmatex">\\(w = G^{+} d\\)</span>
and code <code>$HOME :math:`x`</code>.</p>
<div class="arithmatex">\\[\\min_w w^\\top G w\\]</div>
<a href="#top">here</a> <a href="../b/">b</a> <a href="../b/#sec">b's section</a>
<a href="https://example.org/x">out</a> <img src="../img.png"></body></html>"""


def site(tmp_path: Path, page_a: str) -> Path:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "index.html").write_text(page_a)
    (tmp_path / "b" / "index.html").write_text('<html><body><h2 id="sec">S</h2></body></html>')
    (tmp_path / "img.png").write_bytes(b"")
    return tmp_path


def problems(tmp_path: Path, page_a: str, monkeypatch) -> list[str]:
    monkeypatch.setattr(check_site, "check_katex", lambda site, pages: [])
    root = site(tmp_path, page_a)
    pages = {}
    for path in sorted(root.rglob("*.html")):
        page = check_site.Page()
        page.feed(path.read_text())
        pages[path.resolve()] = page
    return [
        problem
        for path, page in pages.items()
        for problem in check_site.check_page(path, page, root.resolve(), pages)
    ]


def test_a_clean_site_has_no_problem(tmp_path, monkeypatch):
    assert problems(tmp_path, CLEAN, monkeypatch) == []


def test_each_kind_of_problem_is_found(tmp_path, monkeypatch):
    bad = CLEAN.replace("and code", "and :func:`gw.mean`, .. math:: x, costs $5, and code")
    bad = bad.replace('href="../b/#sec"', 'href="../b/#nosuch"')
    bad = bad.replace('href="../b/"', 'href="../c/"')
    found = "\n".join(problems(tmp_path, bad, monkeypatch))
    expected_problems = [
        ":func:", ".. math::", "unrendered '$'", "'../c/' points to nothing", "no id 'nosuch'"
    ]
    for expected in expected_problems:
        assert expected in found, found


def test_the_weightings_table_is_laid_out_one_row_per_method():
    long = "\n".join([
        "| weighting | m | gramweight | torchjd | ratio |", "|---|---|---|---|---|",
        "| mean | 2 | 11 µs | 6 µs | 0.6x |", "| krum | 8 | 34 µs | 47 µs | 1.4x |",
        "| mean | 8 | 15 µs | 4 µs | 0.3x |",
    ])
    assert tables._wide(long, tables._versus).splitlines() == [
        "| weighting | m = 2 | m = 8 |", "| --- | --- | --- |",
        "| `mean` | 11 µs / 6 µs (**0.6x**) | 15 µs / 4 µs (**0.3x**) |",
        "| `krum` | — | 34 µs / 47 µs (**1.4x**) |",
    ]
