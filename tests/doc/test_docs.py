"""The documentation runs: python blocks of the markdown pages, and the API page is complete."""

import re
from pathlib import Path

import pytest

import gramweight as gw

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_python_blocks_run(page, tmp_path, monkeypatch):
    """Each page's python blocks run in order in one namespace, as a reader would run them."""
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": f"docs_{page.stem}"}
    for i, block in enumerate(BLOCK.findall(page.read_text())):
        code = compile(block, f"{page.name}[block {i}]", "exec")
        exec(code, namespace)  # noqa: S102 - running our own documentation is the point


def api_page() -> str:
    return (ROOT / "docs" / "api.md").read_text()


def test_every_public_name_is_on_the_api_page():
    text = api_page()
    public = [*gw.__all__, *gw._NOT_STAR_EXPORTED]
    missing = [f"gramweight.{n}" for n in public if f"::: gramweight.{n}\n" not in text + "\n"]
    missing += [
        f"gramweight.testing.{n}"
        for n in gw.testing.__all__
        if f"::: gramweight.testing.{n}\n" not in text + "\n"
    ]
    assert not missing, f"add these to docs/api.md: {missing}"


def test_every_weighting_is_in_the_weightings_table():
    assert set(gw.WEIGHTINGS) <= set(gw.__all__) | set(gw._NOT_STAR_EXPORTED)
