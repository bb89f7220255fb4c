"""The fonts of the report PDFs: files the project installs itself, never the system's.

Korean reports need Hangul glyphs, which no default system font has. The PyPI wheel
``koreanize-matplotlib`` ships NanumGothic (SIL Open Font License) as plain TTF files; it is a
dependency of the reporter for those files only. Its package imports matplotlib, which the
workspace never installs (``[tool.uv] exclude-dependencies``), so the files are located through
the distribution's metadata without importing it. NanumGothic covers Latin too, so one family
sets every language's PDF, and WeasyPrint needs no fontconfig font at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from powerflow_common.errors import Unavailable

__all__ = ["FONT_DISTRIBUTION", "FONT_FACES", "FONT_FAMILY", "FontFace", "FontMissing", "font_css"]

FONT_DISTRIBUTION = "koreanize-matplotlib"
# The family the PDF stylesheet declares, named after the font: WeasyPrint names the embedded
# fonts after it (NanumGothic, NanumGothic-Bold), which the tests look for.
FONT_FAMILY = "NanumGothic"


@dataclass(frozen=True)
class FontFace:
    """One @font-face: a file of the font distribution and the CSS weight it sets."""

    file_name: str
    weight: int


# Regular for text, bold for headings, table heads and labels (CSS 700 = bold).
FONT_FACES: tuple[FontFace, ...] = (
    FontFace("NanumGothic.ttf", 400),
    FontFace("NanumGothicBold.ttf", 700),
)


class FontMissing(Unavailable, RuntimeError):
    """The report font's package or one of its files is not installed: a broken install."""


def font_path(face: FontFace) -> Path:
    """Where an installed face's file is, from the distribution's RECORD (no import)."""
    try:
        files = distribution(FONT_DISTRIBUTION).files or []
    except PackageNotFoundError as exc:
        raise FontMissing(
            f"the report font package {FONT_DISTRIBUTION} is not installed "
            "(a dependency of powerflow-reporter: reinstall, e.g. `uv sync --all-packages`)"
        ) from exc
    for file in files:
        if file.name == face.file_name:
            path = Path(str(file.locate())).resolve()
            if path.is_file():
                return path
    raise FontMissing(f"{face.file_name} is missing from the installed {FONT_DISTRIBUTION}")


@cache
def font_css() -> str:
    """The PDF stylesheet: the packaged faces as @font-face (file:// URLs), set on everything."""
    rules = [
        f'@font-face {{ font-family: "{FONT_FAMILY}"; font-weight: {face.weight}; '
        f'src: url("{font_path(face).as_uri()}"); }}'
        for face in FONT_FACES
    ]
    # The HTML's own font list names fonts a browser may have; the PDF sets every element in
    # ours, the charts' SVG text included. WeasyPrint takes this sheet as a user stylesheet,
    # which the document's own rules outrank unless it says !important.
    family = f'font-family: "{FONT_FAMILY}", sans-serif !important;'
    rules.append(f"* {{ {family} }}")
    rules.append(f"@page {{ @bottom-right {{ {family} }} }}")  # the page numbers
    return "\n".join(rules)
