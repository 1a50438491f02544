"""MkDocs hook: render the site's LaTeX to MathML at build time.

``pymdownx.arithmatex`` (generic mode) leaves ``\\(...\\)`` in
``<span class="arithmatex">`` and ``\\[...\\]`` in ``<div class="arithmatex">``, on the
Markdown pages and in the docstrings mkdocstrings renders. This hook replaces each with
the MathML that ``latex2mathml`` produces, so that browsers render the math natively:
no JavaScript, no CDN, and the site works offline. A formula ``latex2mathml`` cannot
convert fails the build, naming the page and the formula.
"""

from __future__ import annotations

import html
import re
from typing import Any

from latex2mathml.converter import convert

# commands latex2mathml does not know, written with ones it does
_MACROS = {r"\arg": r"\operatorname{arg}"}
_TEXT = re.compile(r"\\(text|texttt|textrm|mathrm|operatorname)\{([^{}]*)\}")
# a LaTeX command left in the output: latex2mathml did not understand it
_LEFT_OVER = re.compile(r">[^<]*\\[A-Za-z_][^<]*<")
_INLINE = re.compile(r'<span class="arithmatex">\\\((.*?)\\\)</span>', re.S)
_BLOCK = re.compile(r'<div class="arithmatex">\\\[(.*?)\\\]</div>', re.S)


def to_mathml(tex: str, display: str) -> str:
    """MathML for the (HTML-escaped) LaTeX ``tex``; ``display`` is "inline" or "block"."""
    tex = html.unescape(tex).strip()
    # ``\_`` in text is an underscore (latex2mathml would keep the backslash)
    tex = _TEXT.sub(lambda m: "\\" + m.group(1) + "{" + m.group(2).replace("\\_", "_") + "}", tex)
    for command, replacement in _MACROS.items():
        tex = re.sub(re.escape(command) + r"(?![A-Za-z])", lambda m, r=replacement: r, tex)
    mathml = convert(tex, display=display)
    left_over = _LEFT_OVER.search(mathml)
    if left_over:
        raise ValueError(f"unsupported LaTeX {left_over.group(0)[1:-1]!r}")
    return mathml


def render_math(text: str, where: str = "") -> str:
    """Replace every arithmatex span and div in ``text`` by its MathML."""

    def sub(display: str, tag: str) -> Any:
        def repl(match: re.Match[str]) -> str:
            try:
                mathml = to_mathml(match.group(1), display)
            except Exception as exc:  # latex2mathml raises many exception types
                raise ValueError(f"{where}: cannot convert {match.group(1)!r} to MathML: {exc}") from exc
            return f'<{tag} class="arithmatex">{mathml}</{tag}>'

        return repl

    text = _BLOCK.sub(sub("block", "div"), text)
    return _INLINE.sub(sub("inline", "span"), text)


def on_page_content(html_text: str, page: Any, **kwargs: Any) -> str:
    """MkDocs event: the page's HTML, Markdown and API docstrings alike."""
    return render_math(html_text, page.file.src_uri)
