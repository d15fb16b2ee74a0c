"""report.html: the summary's header, tables.report_tables, the warnings and the figures in one self-contained file
(inline CSS, PNGs as data URIs, no scripts).

It draws and computes nothing; every text goes through html.escape. No timestamp is written, so the same summary and
figures give the same bytes. Every AUC column and heading names its grain; a run with several grains (frames and
videos) gets one table per grain, never a table pooling them.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any, Iterable

from dfsweep.storage import Location, parse
from dfsweep.verdict.labels import caption, grains_of, header_lines, perturbation_axes
from dfsweep.verdict.tables import TextTable, report_tables

REPORT_HTML = "report.html"  # beside summary.json in the run directory

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #1d2330;
       margin: 24px auto; max-width: 1320px; padding: 0 16px; background: #fff; }
h1 { font-size: 24px; margin: 0 0 6px; } h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid #d8dce3;
     padding-bottom: 4px; }
.meta { color: #4a5263; margin: 2px 0; }
table { border-collapse: collapse; margin: 8px 0 4px; font-size: 12.5px; }
th, td { border: 1px solid #d8dce3; padding: 3px 8px; text-align: right; white-space: nowrap; }
th { background: #f1f3f7; } td.l, th.l { text-align: left; }
tbody tr:nth-child(even) { background: #fafbfc; }
.caption { color: #5b6475; font-size: 12px; margin: 2px 0 10px; white-space: pre-line; }
.warn { background: #fff8e6; border: 1px solid #f0d48a; padding: 8px 14px; } .warn li { margin: 3px 0; }
figure { margin: 18px 0; } figure img { max-width: 100%; border: 1px solid #e3e6eb; }
figcaption { color: #4a5263; font-size: 12.5px; margin-top: 4px; }
"""


def escape(x: Any) -> str:
    return html.escape(str(x), quote=True)


def paragraph(text: str, css_class: str = "caption") -> str:
    return f'<p class="{css_class}">{escape(text)}</p>'


def table_html(table: TextTable) -> str:
    """A heading, the table (its first text_columns left-aligned) and its caption; the heading and `empty` for a
    table without rows that says why, nothing for one that does not."""
    if not table.rows:
        return f"<h2>{escape(table.title)}</h2>" + paragraph(table.empty) if table.empty else ""

    def cls(i: int) -> str:
        return ' class="l"' if i < table.text_columns else ""

    head = "".join(f"<th{cls(i)}>{escape(h)}</th>" for i, h in enumerate(table.columns))
    body = "".join("<tr>" + "".join(f"<td{cls(i)}>{escape(c)}</td>" for i, c in enumerate(r)) + "</tr>"
                   for r in table.rows)
    return (f"<h2>{escape(table.title)}</h2><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
            + (paragraph(table.caption) if table.caption else ""))


def warnings_html(warnings: list[str]) -> str:
    if not warnings:
        return "<h2>Validity warnings</h2>" + paragraph("none")
    return ('<h2>Validity warnings</h2><div class="warn"><ul>'
            + "".join(f"<li>{escape(w)}</li>" for w in warnings) + "</ul></div>")


def figures_html(paths: Iterable, summary: dict[str, Any]) -> str:
    grains, axes = grains_of(summary), perturbation_axes(summary["robustness"])
    out = ["<h2>Figures</h2>"]
    for p in map(parse, paths):
        data = base64.b64encode(p.read_bytes()).decode("ascii")
        out.append(f'<figure id="{escape(p.stem)}"><img alt="{escape(p.name)}" src="data:image/png;base64,{data}">'
                   f"<figcaption><b>{escape(p.name)}</b>: {escape(caption(p, grains, axes))}</figcaption></figure>")
    return "".join(out)


def render_html(summary: dict[str, Any], figure_paths: Iterable) -> str:
    body = ("<h1>dfsweep report</h1>" + "".join(paragraph(line, "meta") for line in header_lines(summary))
            + "".join(table_html(t) for t in report_tables(summary)) + warnings_html(summary["warnings"])
            + figures_html(figure_paths, summary))
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>dfsweep report: {escape(Path(summary['run_dir']).name)}</title>"
            f"<style>{CSS}</style></head><body>{body}</body></html>\n")


def write_html(summary: dict[str, Any], figure_paths: Iterable, path) -> Location:
    """Write report.html (one file, everything inline; a local path or a storage URI) and return where it is."""
    path = parse(path)
    path.write_text(render_html(summary, figure_paths))
    return path
