"""report.html: the verdict box first, then the summary's header, tables.report_tables, the warnings and the figures in
one self-contained file (inline CSS, PNGs as data URIs, no scripts).

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
from dfsweep.verdict.tables import TextTable, VerdictBox, report_tables, verdict_box, verdict_cells

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
.verdict { border: 2px solid #3b6fb6; border-radius: 6px; background: #f6f9fe; padding: 4px 16px 8px;
           margin: 14px 0 20px; overflow-x: auto; }
.verdict h2 { border: none; margin: 8px 0 4px; } .verdict table { font-size: 13.5px; background: #fff; }
.verdict th { white-space: normal; }  /* long headings wrap: the box fits a laptop's width without scrolling */
.verdict td.w { text-align: left; white-space: normal; min-width: 160px; max-width: 420px; color: #7a4b00; }
td.v { text-align: left; font-weight: bold; } td.v-better { background: #dff3e2; color: #17612a; }
td.v-worse { background: #fbe3e3; color: #9b1c1c; } td.v-not-shown { color: #3a4252; }
td.v-undefined { color: #8a93a3; }
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


def verdict_html(box: VerdictBox | None) -> str:
    """The box the page opens with: the verdict per domain and candidate (the verdict cell coloured by its word, the
    warnings wrapping), its caption stating the rule; why there is none when no candidate was compared."""
    if box is None:
        return ""
    out = f'<section class="verdict" id="verdict"><h2>{escape(box.title)}</h2>'
    if not box.rows:
        return out + paragraph(box.empty, "meta") + paragraph(box.caption) + "</section>"
    verdict, last = box.columns.index("verdict"), len(box.columns) - 1

    def cls(i: int, word: str | None = None) -> str:
        """Text columns left-aligned; in a row (`word` given), the verdict cell coloured by its word and the warnings
        cell wrapping."""
        if word is not None and i == verdict:
            return f' class="v v-{escape(word.replace(" ", "-"))}"'
        if word is not None and i == last:
            return ' class="w"'
        return ' class="l"' if i <= verdict or i == last else ""

    head = "".join(f"<th{cls(i)}>{escape(h)}</th>" for i, h in enumerate(box.columns))
    body = "".join("<tr>" + "".join(f"<td{cls(i, r.verdict)}>{escape(c)}</td>" for i, c in enumerate(verdict_cells(r)))
                   + "</tr>" for r in box.rows)
    return (out + f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>" + paragraph(box.caption)
            + "</section>")


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
    body = ("<h1>dfsweep report</h1>" + verdict_html(verdict_box(summary))
            + "".join(paragraph(line, "meta") for line in header_lines(summary))
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
