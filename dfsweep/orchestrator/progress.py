"""What a person watches while a run works: prepare's faces and the sweep's trials, live on a terminal, as lines elsewhere.

On a terminal (the console's is_terminal) each display is one rich Live panel: prepare shows the files scanned, the
faces cropped, their rate and ETA; the sweep a row per trial (status, phase, epoch / total, val AUC, elapsed) under
its overall ETA. Piped or logged (CI, `| tee`), the same state comes out as one line per event (a trial starts,
changes phase, finishes, fails, is restarted) plus a progress line at most every `every_s` seconds (30; while nothing
changes, as during a long epoch, every `quiet_every_s`, 5 min), so that a log stays short. The state is plain data fed by plain calls (orchestrator.tune_events.ShowProgress feeds the sweep from
Tune's results; the prepare stage calls PrepareProgress as its progress hook), so lines and table are tested
without Ray.
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass
from typing import Callable

PROGRESS_EVERY_S = 30.0  # at most one progress line this often when not on a terminal...
QUIET_EVERY_S = 300.0  # ...and, while nothing changes (a long epoch), one this often to show the run is alive


def clock_text(seconds: float | None) -> str:
    """0:42, 12:05, 1:02:03; '?' when unknown."""
    if seconds is None:
        return "?"
    s = max(0, int(round(seconds)))
    h, m, s = s // 3600, s % 3600 // 60, s % 60
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class _Display:
    """A Live panel on a terminal, lines elsewhere; a context manager (the panel stays on screen when it ends)."""

    def __init__(self, console, *, live: bool | None = None, every_s: float = PROGRESS_EVERY_S,
                 quiet_every_s: float = QUIET_EVERY_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.console = console
        self.live = console.is_terminal if live is None else live
        self.every_s, self.quiet_every_s = every_s, quiet_every_s
        self.changed = False  # since the last progress line (set by the displays' updates)
        self.clock = clock
        self.t0 = clock()
        self._last_line = self.t0  # the first progress line comes every_s after the start
        self._lock = threading.Lock()  # Live redraws from its own thread while the driver updates the state
        self._live = None

    def __enter__(self):
        if self.live:
            from rich.live import Live

            # stderr is left alone: in a quiet run it goes to the run's log file (orchestrator.runlog).
            self._live = Live(get_renderable=self._locked_render, console=self.console, refresh_per_second=4,
                              redirect_stderr=False)
            self._live.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        with self._lock:
            self._finish(exc_type is not None)
        if self._live is not None:
            self._live.stop()  # draws the last state and leaves it on screen
            self._live = None
        elif self._closing_line():
            self._say(self._closing_line())

    def _locked_render(self):
        with self._lock:
            return self.render()

    def _say(self, text: str) -> None:
        self.console.print(text, highlight=False, soft_wrap=True, markup=False)

    def _event(self, text: str | None, always: bool = False) -> None:
        """An event line: printed when not live (and, with always, above the live panel too)."""
        if text and (always or not self.live):
            self._say(text)

    def tick(self) -> None:
        """Called often (every Tune step, every batch): a progress line when one is due (lines only): every_s after
        the last one if anything changed since, else quiet_every_s after it."""
        if self.live:
            return
        now = self.clock()
        since = now - self._last_line
        if since >= self.quiet_every_s or (self.changed and since >= self.every_s):
            self._last_line, self.changed = now, False
            with self._lock:
                line = self.progress_line()
            if line:
                self._say(line)

    # What each display defines.
    def render(self):
        raise NotImplementedError

    def progress_line(self) -> str | None:
        raise NotImplementedError

    def _finish(self, failed: bool) -> None:
        pass

    def _closing_line(self) -> str | None:
        return None


class PrepareProgress(_Display):
    """prepare's progress hook, `progress(stage, done, total)`: "scan" (0, 0) as the datasets are scanned, "scanned"
    (sampled, files) once the manifest is written, "detect" (faces so far, faces to detect) per detection batch,
    "write" (0, crops) as the crops are written."""

    def __init__(self, console, **kw) -> None:
        super().__init__(console, **kw)
        self.stage = "scan"
        self.files = self.sampled = self.done = self.total = self.crops = 0
        self.t_detect: float | None = None
        self.t_detect_end: float | None = None
        self.ended: str | None = None  # "done" or "failed" once the display has ended: its last frame says so

    def _finish(self, failed: bool) -> None:
        self.ended = "failed" if failed else "done"

    def __call__(self, stage: str, done: int, total: int) -> None:
        with self._lock:
            line = self._update(stage, done, total)
        self._event(line)
        if stage == "detect":
            self.tick()

    def _update(self, stage: str, done: int, total: int) -> str | None:
        now = self.clock()
        self.stage, self.changed = stage, True
        if stage == "scanned":
            self.sampled, self.files = done, total
        elif stage == "detect":
            if self.t_detect is None:
                self.t_detect = now
            self.done, self.total = done, total
            if done >= total:
                self.t_detect_end = now
                return f"faces: {done}/{total} detected in {clock_text(now - self.t_detect)}"
        elif stage == "write":
            self.crops = total
        return None

    def rate(self) -> float | None:
        """Faces per second since detection started."""
        if self.t_detect is None or not self.done:
            return None
        dt = (self.t_detect_end or self.clock()) - self.t_detect
        return self.done / dt if dt > 0 else None

    def eta_s(self) -> float | None:
        r = self.rate()
        return (self.total - self.done) / r if r else None

    def progress_line(self) -> str | None:
        if self.stage != "detect" or not self.total or self.done >= self.total:
            return None
        r = self.rate()
        return (f"faces: {self.done}/{self.total} detected ({100 * self.done // self.total}%)"
                + (f", {r:.1f}/s" if r else "") + f"; ETA {clock_text(self.eta_s())}")

    def render(self):
        from rich.progress_bar import ProgressBar
        from rich.spinner import Spinner
        from rich.table import Table

        grid = Table.grid(padding=(0, 2))
        files = f"{self.files} files scanned, {self.sampled} sampled" if self.files else "scanning the datasets"
        elapsed = clock_text(self.clock() - self.t0)
        if self.stage == "scan":
            grid.add_row(Spinner("dots"), files, elapsed)
            return grid
        grid.add_row("prepare", files, elapsed)
        if self.total:
            r = self.rate()
            grid.add_row("faces", ProgressBar(total=self.total, completed=self.done, width=40),
                         f"{self.done}/{self.total} cropped" + (f"  {r:.1f}/s" if r else "")
                         + ("" if self.done >= self.total else f"  ETA {clock_text(self.eta_s())}"))
        if self.stage == "write":
            # the last frame stays on screen: a spinner there would say the crops are still being written
            grid.add_row(Spinner("dots") if self.ended is None else "crops",
                         f"writing {self.crops} crops" if self.ended is None else
                         f"wrote {self.crops} crops" if self.ended == "done" else f"stopped writing {self.crops} crops",
                         "")
        return grid


@dataclass
class TrialRow:
    trial_id: str
    variant: str
    epochs: int | None  # how many epochs the trial reports (None: a variant without epochs, such as the cue)
    status: str = "pending"  # pending, running, restarting, done, failed, stopped
    phase: str = ""
    epoch: int | None = None
    val_auc: float | None = None
    chosen: str | None = None  # the epoch (or setting) the trial selected on source val, from its last report
    started: float | None = None  # first start (a restart keeps it: elapsed counts the whole trial)
    ended: float | None = None
    failures: int = 0
    error: str = ""

    def elapsed(self, now: float) -> float | None:
        return None if self.started is None else (self.ended or now) - self.started

    def shown_phase(self) -> str:
        """What the trial is doing: its phase; "scoring" once its last epoch is reported (it exports its model and
        scores the test sets), "scored" once it reported its scores written; when done, the epoch it selected."""
        if self.status == "done" and self.chosen:
            return f"selected {self.chosen}"
        if self.phase == "done":
            return "scored"
        if self.epochs and self.epoch and self.epoch >= self.epochs:
            return "scoring"
        return self.phase

    @property
    def ended_ok(self) -> bool:
        return self.status == "done"

    @property
    def over(self) -> bool:
        return self.status in ("done", "failed", "stopped")


def sweep_eta(rows: list[TrialRow], now: float, concurrency: int) -> float | None:
    """Seconds until every trial has ended (rough): each unfinished trial is expected to take as long as the median
    finished trial of its variant, else (while it runs) its elapsed time scaled by epochs to go, else the mean of
    the others' expectations; the remaining time is shared by `concurrency` trials at once. None when nothing is
    known yet."""
    took: dict[str, list[float]] = {}
    for r in rows:
        if r.ended_ok and r.started is not None:
            took.setdefault(r.variant, []).append(r.ended - r.started)
    todo = [r for r in rows if not r.over]
    if not todo:
        return 0.0
    expect: dict[str, float | None] = {}
    for r in todo:
        if r.variant in took:
            expect[r.trial_id] = statistics.median(took[r.variant])
        elif r.status == "running" and r.epochs and r.epoch:
            expect[r.trial_id] = r.elapsed(now) * r.epochs / min(r.epoch, r.epochs)
        else:
            expect[r.trial_id] = None
    known = [v for v in expect.values() if v is not None] or [v for vs in took.values() for v in vs]
    if not known:
        return None
    fill = statistics.mean(known)
    left = []
    for r in todo:
        d = expect[r.trial_id] if expect[r.trial_id] is not None else fill
        left.append(max(0.0, d - (r.elapsed(now) or 0.0)) if r.status == "running" else d)
    return max(sum(left) / max(1, concurrency), max(left))


class SweepProgress(_Display):
    """The sweep: a row per trial; fed by started / result / finished / failed / restarting (trial ids and Tune's
    result dicts: phase, epoch, val_auc, chosen_epoch), and tick() from every Tune step."""

    def __init__(self, console, trials: list[dict], epochs: dict[str, int | None], *, name: str = "sweep",
                 max_failures: int = 0, **kw) -> None:
        super().__init__(console, **kw)
        self.name = name
        self.max_failures = max_failures
        self.rows = {t["trial_id"]: TrialRow(t["trial_id"], t["variant"], epochs.get(t["trial_id"])) for t in trials}
        self.concurrency = 1  # the most trials seen running at once

    def _row(self, tid: str) -> TrialRow:
        if tid not in self.rows:  # not planned here (never expected): shown all the same
            self.rows[tid] = TrialRow(tid, tid.split("-")[0], None)
        return self.rows[tid]

    def started(self, tid: str) -> None:
        with self._lock:
            r = self._row(tid)
            again = r.failures > 0
            r.status, r.ended, self.changed = "running", None, True
            if r.started is None:
                r.started = self.clock()
            self.concurrency = max(self.concurrency, sum(x.status == "running" for x in self.rows.values()))
        self._event(f"{tid} restarted (attempt {r.failures + 1})" if again else f"{tid} started")

    def result(self, tid: str, result: dict) -> None:
        with self._lock:
            r = self._row(tid)
            phase = str(result.get("phase") or "")
            line, self.changed = None, True
            if phase and phase != "done" and phase != r.phase:
                line = f"{tid}: {phase}" + self._epoch_text(r, result)
            if phase:
                r.phase = phase
            if result.get("epoch"):  # the cue reports no epochs (0 in its last report)
                r.epoch = int(result["epoch"])
            if result.get("val_auc") is not None:
                r.val_auc = float(result["val_auc"])
            if result.get("chosen_epoch") is not None:
                r.chosen = str(result["chosen_epoch"])
        self._event(line)
        self.tick()

    @staticmethod
    def _epoch_text(r: TrialRow, result: dict) -> str:
        epoch = result.get("epoch")
        if not epoch:
            return ""
        return f" (epoch {epoch}" + (f"/{r.epochs}" if r.epochs else "") + ")"

    def finished(self, tid: str) -> None:
        """Tune ended the trial without an error: done if its last report was phase "done", else stopped (Ctrl-C)."""
        with self._lock:
            r = self._row(tid)
            r.ended, self.changed = self.clock(), True
            r.status = "done" if r.phase == "done" else "stopped"
            took = clock_text(r.elapsed(r.ended))
            line = (f"{tid} done in {took}" + (f", selected {r.chosen}" if r.chosen else "")
                    + (f", last val AUC {r.val_auc:.3f}" if r.val_auc is not None else "")
                    if r.status == "done" else f"{tid} stopped after {took}")
        self._event(line)

    def failed(self, tid: str, error: str) -> None:
        with self._lock:
            r = self._row(tid)
            r.status, r.ended, r.error, self.changed = "failed", self.clock(), error, True
            r.failures += 1
            line = f"{tid} FAILED after {clock_text(r.elapsed(r.ended))}: {error}"
        self._event(line, always=True)

    def restarting(self, tid: str, failures: int, error: str) -> None:
        with self._lock:
            r = self._row(tid)
            r.status, r.failures, r.error, self.changed = "restarting", failures, error, True
            of = f" of {self.max_failures} allowed" if self.max_failures > 0 else ""
            line = f"{tid} failed ({error}); restarting (failure {failures}{of})"
        self._event(line, always=True)

    def counts(self) -> dict[str, int]:
        out = {"done": 0, "running": 0, "pending": 0, "failed": 0, "stopped": 0}
        for r in self.rows.values():
            key = "running" if r.status == "restarting" else r.status
            out[key] = out.get(key, 0) + 1
        return out

    def summary(self, eta: bool = True, detail: bool = False) -> str:
        """detail: which trials run and where they are (the progress line; the live table shows it in rows)."""
        now = self.clock()
        c = self.counts()
        parts = [f"{c['done']}/{len(self.rows)} trials done"]
        parts += [f"{c[k]} {k}" + (self._running_detail() if detail and k == "running" else "")
                  for k in ("running", "pending", "failed", "stopped") if c[k]]
        text = f"{self.name}: " + ", ".join(parts) + f"; elapsed {clock_text(now - self.t0)}"
        if eta and (c["running"] or c["pending"]):
            text += f"; ETA {clock_text(sweep_eta(list(self.rows.values()), now, self.concurrency))}"
        return text

    def _running_detail(self, most: int = 3) -> str:
        running = [r for r in self.rows.values() if r.status in ("running", "restarting")]
        shown = [r.trial_id + (f" {r.shown_phase()}" if r.phase else "")
                 + (f" {r.epoch}/{r.epochs}" if r.epoch and r.epochs else f" {r.epoch}" if r.epoch else "")
                 for r in running[:most]]
        return f" ({', '.join(shown)}{f', +{len(running) - most}' if len(running) > most else ''})" if shown else ""

    def progress_line(self) -> str | None:
        return self.summary(detail=True)

    def _finish(self, failed: bool) -> None:
        now = self.clock()
        for r in self.rows.values():  # the sweep ended under them (Ctrl-C, an error elsewhere)
            if r.status in ("running", "restarting"):
                r.status, r.ended = "stopped", now

    def _closing_line(self) -> str | None:
        return self.summary(eta=False)

    def render(self):
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        now = self.clock()
        table = Table(expand=False)
        for col, justify in (("trial", "left"), ("status", "left"), ("phase", "left"), ("epoch", "right"),
                             ("val AUC", "right"), ("elapsed", "right")):
            table.add_column(col, justify=justify, no_wrap=True)
        style = {"running": "cyan", "restarting": "yellow", "done": "green", "failed": "bold red",
                 "stopped": "yellow", "pending": "dim"}
        for r in self._shown_rows():
            if isinstance(r, str):
                table.add_row(r, "", "", "", "", "", style="dim")
                continue
            epoch = "" if r.epoch is None else f"{r.epoch}/{r.epochs}" if r.epochs else str(r.epoch)
            status = r.status + (f" ({r.failures}×)" if r.failures and r.status != "failed" else "")
            table.add_row(r.trial_id, status, r.shown_phase(), epoch, "" if r.val_auc is None else f"{r.val_auc:.3f}",
                          clock_text(r.elapsed(now)) if r.started is not None else "", style=style.get(r.status))
        return Group(Text(self.summary(), style="bold"), table)

    def _shown_rows(self) -> list:
        """Every row when they fit the terminal; else the running, failed and restarting ones first, then as many
        others as fit, and one line counting the rest."""
        rows = list(self.rows.values())
        room = max(5, self.console.size.height - 8)
        if len(rows) <= room:
            return rows
        first = [r for r in rows if r.status in ("running", "restarting", "failed")]
        rest = [r for r in rows if r not in first]
        shown = first + rest[:max(0, room - len(first) - 1)]
        hidden = [r for r in rows if r not in shown]
        c: dict[str, int] = {}
        for r in hidden:
            c[r.status] = c.get(r.status, 0) + 1
        return [r for r in rows if r in shown] + [f"… {len(hidden)} more: "
                                                  + ", ".join(f"{n} {s}" for s, n in sorted(c.items()))]
