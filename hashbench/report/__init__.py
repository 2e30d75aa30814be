"""Reports of a run: a self-contained HTML page with tables and figures, and a CSV export."""

from __future__ import annotations

from .html import render_html, write_report

__all__ = ["render_html", "write_report"]
