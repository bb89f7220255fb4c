"""The PDF of a report: its HTML through WeasyPrint, in the packaged font (fonts.py).

Kept apart from render.py so that the reporter can check at start that PDFs can be made
without importing the narrative (the anthropic SDK, seconds to import).
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import cast

from powerflow_common.errors import Unavailable
from powerflow_reporter.fonts import font_css

__all__ = ["PDF_LIBRARIES_HINT", "PdfUnavailable", "load_weasyprint", "render_pdf"]

# What to install when WeasyPrint cannot load its system libraries (it loads pango, pangoft2 and
# harfbuzz with cffi at import time). Said in the report's note and the reporter's log.
PDF_LIBRARIES_HINT = (
    "install pango: Debian/Ubuntu `apt-get install libpango-1.0-0 libpangoft2-1.0-0`, "
    "macOS `brew install pango`"
)


class PdfUnavailable(Unavailable, RuntimeError):
    """WeasyPrint cannot run on this machine (a system library is missing): no PDF, but the
    HTML and Markdown are unaffected. Permanent until someone installs the library."""


def load_weasyprint() -> ModuleType:
    """WeasyPrint, or PdfUnavailable naming what to install (imported when needed: heavy)."""
    try:
        import weasyprint  # type: ignore[import-untyped]
    except OSError as exc:  # cffi could not dlopen pango (or harfbuzz, ...)
        raise PdfUnavailable(
            f"PDF not produced: WeasyPrint cannot load a system library ({exc}); "
            f"{PDF_LIBRARIES_HINT}"
        ) from exc
    except ImportError as exc:
        raise PdfUnavailable(f"PDF not produced: WeasyPrint is not installed ({exc})") from exc
    return cast(ModuleType, weasyprint)


def render_pdf(html_text: str, path: Path) -> None:
    """Write the HTML as a PDF with WeasyPrint, in the packaged font (see fonts.py)."""
    weasyprint = load_weasyprint()
    from weasyprint.text.fonts import FontConfiguration  # type: ignore[import-untyped]

    font_config = FontConfiguration()
    stylesheet = weasyprint.CSS(string=font_css(), font_config=font_config)
    weasyprint.HTML(string=html_text).write_pdf(
        str(path), stylesheets=[stylesheet], font_config=font_config
    )
