"""The documentation site: built offline, math rendered at build time, API pages complete.

The site build (``mkdocs build --strict``, ~10 s) is shared by the slow tests of this
module; the MathML hook's own tests are fast.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
HOOK = ROOT / "docs" / "hooks" / "mathml.py"

# API pages that still render reST markup from docstrings not yet converted to markdown
# (their modules were being edited elsewhere; run the conversion script on them, then
# delete the page from this set)
UNCONVERTED_PAGES: set[str] = set()

REST_MARKUP = re.compile(r":(?:func|class|mod|meth|attr|data|exc|obj|math):(?:`|<code>)|\.\. math::")
EXTERNAL = re.compile(r"<(?:script|link)\b[^>]*?\b(?:src|href)\s*=\s*[\"']?(?:https?:)?//", re.I)


def load_hook() -> ModuleType:
    pytest.importorskip("latex2mathml")
    spec = importlib.util.spec_from_file_location("docs_mathml_hook", HOOK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hook_renders_inline_and_display_math_to_mathml() -> None:
    hook = load_hook()
    html = (
        '<p>penalty <span class="arithmatex">\\(\\lambda g_j\\)</span></p>'
        '<div class="arithmatex">\\[\\sum_j a_j &lt; b\\]</div>'
    )
    out = hook.render_math(html, "page.md")
    assert "\\lambda" not in out and "\\(" not in out and "\\[" not in out
    assert re.search(r'<span class="arithmatex"><math [^>]*display="inline"', out)
    assert re.search(r'<div class="arithmatex"><math [^>]*display="block"', out)
    assert "<mi>λ</mi>" in out or "<mi>&#x003BB;</mi>" in out
    assert "&#x0003C;" in out or "&lt;" in out  # the unescaped "<" comes back escaped


def test_hook_fixes_underscores_in_text_and_knows_arg() -> None:
    hook = load_hook()
    out = hook.to_mathml("\\text{running\\_mean} + \\arg\\max_k a_k", "inline")
    assert "running_mean" in out and "\\" not in out


def test_hook_fails_on_latex_it_cannot_render() -> None:
    hook = load_hook()
    with pytest.raises(ValueError, match=r"page\.md: cannot convert .*unsupported LaTeX '\\\\notacommand'"):
        hook.render_math('<span class="arithmatex">\\(\\notacommand x\\)</span>', "page.md")




def pages(site: Path) -> dict[str, str]:
    return {
        str(p.parent.relative_to(site)).replace("\\", "/"): p.read_text(encoding="utf-8")
        for p in site.rglob("index.html")
        if p.parent != site / "404"
    }


@pytest.fixture(scope="module")
def site(docs_site: Path) -> Path:
    return docs_site


@pytest.mark.slow
def test_no_page_loads_anything_from_outside_the_site(site: Path) -> None:
    offenders = {
        name: EXTERNAL.findall(text) for name, text in pages(site).items() if EXTERNAL.search(text)
    }
    assert not offenders, f"<script>/<link> tags with external URLs: {offenders}"


@pytest.mark.slow
def test_math_page_is_mathml_not_raw_tex(site: Path) -> None:
    text = pages(site)["math"]
    assert text.count("<math ") > 100
    assert "\\(" not in text and "\\[" not in text
    assert "\\lambda" not in text


@pytest.mark.slow
def test_docstring_math_is_mathml(site: Path) -> None:
    text = pages(site)["api/marglik"]
    assert text.count('display="block"') >= 3  # the Laplace and ELBO formulas
    assert "$$" not in text and "\\log" not in text


@pytest.mark.slow
@pytest.mark.parametrize(
    "page",
    [
        pytest.param(name, marks=pytest.mark.xfail(strict=False, reason="docstrings not converted yet"))
        if name in UNCONVERTED_PAGES
        else name
        for name in sorted(p.stem for p in (ROOT / "docs" / "api").glob("*.md"))
        for name in [f"api/{name}" if name != "index" else "api"]
    ],
)
def test_api_pages_show_no_rest_markup(site: Path, page: str) -> None:
    found = REST_MARKUP.findall(pages(site)[page])
    assert not found, f"{page} shows reST markup: {found[:5]}"


def grouped_entries(text: str) -> list[str]:
    """Entries of numpy-style Parameters / Attributes sections that document several names at once."""
    found: list[str] = []
    lines = text.splitlines()
    for i, line in enumerate(lines[:-1]):
        if line.strip() not in ("Parameters", "Attributes") or set(lines[i + 1].strip()) != {"-"}:
            continue
        indent = len(line) - len(line.lstrip())
        for entry in lines[i + 2:]:
            if entry.strip() and len(entry) - len(entry.lstrip()) < indent:
                break
            if entry.strip() in ("Returns", "Raises", "Warns", "Yields", "Examples", "Notes", "See Also"):
                break
            if len(entry) - len(entry.lstrip()) == indent and re.fullmatch(r"\s*\w+(, \w+)+\s*", entry):
                found.append(entry.strip())
    return found


def test_grouped_entries_are_found() -> None:
    doc = "    Parameters\n    ----------\n    X, y\n        Data.\n    lr\n        Rate.\n"
    assert grouped_entries(doc) == ["X, y"]


def test_every_parameter_is_documented_on_its_own() -> None:
    """mkdocstrings gives a grouped entry ("steps, lr") the first name's type and default."""
    grouped = {str(p.relative_to(ROOT)): g for p in sorted((ROOT / "bayesguide").rglob("*.py"))
               if (g := grouped_entries(p.read_text(encoding="utf-8")))}
    assert not grouped, f"entries documenting several parameters at once: {grouped}"
