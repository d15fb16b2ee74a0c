"""The verdict on the console: the verdict box first, then the header, tables.report_tables and the warnings as rich
panels and tables; computes nothing."""

from __future__ import annotations

from typing import Any

from dfsweep.verdict.labels import BETTER, NOT_SHOWN, UNDEFINED, WORSE, header_lines
from dfsweep.verdict.tables import TextTable, VerdictBox, comparison_tables, report_tables, verdict_box

# How the box marks a verdict: green better, red worse, plain not shown, dim undefined.
VERDICT_STYLE = {BETTER: "bold green", WORSE: "bold red", NOT_SHOWN: "bold", UNDEFINED: "dim"}


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


def _verdict_box(box: VerdictBox, console) -> None:
    """The box the report opens with: a panel of a few lines per candidate (they wrap at any width, a non-TTY's 80
    columns included), the verdict coloured, the rule in its last lines."""
    from rich.panel import Panel
    from rich.text import Text

    body = Text()
    if not box.rows:
        body.append(box.empty + "\n")
    for r in box.rows:
        body.append(f"{r.domain}: {r.versus} — ", style="bold")
        body.append(r.verdict, style=VERDICT_STYLE.get(r.verdict, ""))
        body.append(f" (rank {r.rank})\n")
        seeds = f"{r.seeds} seed" + ("" if r.seeds == "1" else "s")
        body.append(f"  Δ {r.delta} {r.ci} · p Holm {r.p} (paired t, {r.direction}) · {seeds}\n")
        body.append(f"  P(better): {r.seed_share} seeds, {r.sample_share} of samples\n")
        for w in r.warnings:
            body.append(f"  ! {w}\n", style="yellow")
        if r.more_warnings:
            body.append(f"  + {r.more_warnings} more in the validity warnings below\n", style="yellow")
    body.append("\n" + box.caption, style="dim")
    console.print(Panel(body, title=box.title, border_style="cyan"))


def _warnings(warnings: list[str], title: str, console) -> None:
    from rich.panel import Panel

    if warnings:
        console.print(Panel("\n".join(f"• {w}" for w in warnings), title=title, border_style="yellow", expand=False))


def render(summary: dict[str, Any], console=None) -> None:
    """Draw the summary: the verdict box first, then a header panel, its tables (one per grain where a run has several)
    and its warnings."""
    from rich.console import Console
    from rich.panel import Panel

    console = console or Console()
    box = verdict_box(summary)
    if box is not None:
        _verdict_box(box, console)
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
