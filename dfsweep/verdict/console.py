"""The verdict on the console: the header, tables.report_tables and the warnings as rich panels and tables; computes
nothing."""

from __future__ import annotations

from typing import Any

from dfsweep.verdict.labels import header_lines
from dfsweep.verdict.tables import TextTable, comparison_tables, report_tables


def _draw(table: TextTable, console) -> None:
    from rich.table import Table

    if not table.rows:  # report.html may say why a table is empty; the console leaves it out
        return
    t = Table(title=table.title, caption=table.caption or None)
    for i, column in enumerate(table.columns):
        t.add_column(column, justify="left" if i < table.text_columns else "right")
    for row in table.rows:
        t.add_row(*row)
    console.print(t)


def _warnings(warnings: list[str], title: str, console) -> None:
    from rich.panel import Panel

    if warnings:
        console.print(Panel("\n".join(f"• {w}" for w in warnings), title=title, border_style="yellow", expand=False))


def render(summary: dict[str, Any], console=None) -> None:
    """Draw the summary: a header panel, its tables (one per grain where a run has several) and its warnings."""
    from rich.console import Console
    from rich.panel import Panel

    console = console or Console()
    console.print(Panel("\n".join(header_lines(summary)), title="dfsweep report", expand=False))
    for table in report_tables(summary):
        _draw(table, console)
    _warnings(summary["warnings"], "validity warnings", console)


def render_comparison(cmp: dict[str, Any], console=None) -> None:
    """Draw compare_runs' result as one rich table per grain."""
    from rich.console import Console

    console = console or Console()
    for table in comparison_tables(cmp):
        _draw(table, console)
    _warnings(cmp["warnings"], "comparison warnings", console)
