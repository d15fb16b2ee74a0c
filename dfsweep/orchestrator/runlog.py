"""Where Ray's own output goes during a run: into a log file with the run, named when it opens, so that the console
keeps dfsweep's lines and its progress display (orchestrator.progress).

RunLog, while open, sends every record of Ray's Python loggers (Ray Core, Ray Data, Tune) to the log file; those of
level WARNING and above also reach the console unless NOT_SHOWN names them. Whatever Ray's C++ core and
anything else write to the process's stderr (file descriptor 2) goes to the file as well; Ray Data's progress bars
are off (prepare's display counts the faces instead). The file is RUN_DIR/logs/<command>-<UTC time>.log; when the run
directory is a bucket, it is written to a local temporary file and uploaded there when the run ends. With
verbose=True Ray's output stays on the console as before, and the log file gets a copy of its logger records.

quiet_tune() silences Tune's own console reporter for the length of a sweep: with RAY_AIR_NEW_OUTPUT=0 (Tune's
legacy output engine) and RunConfig(verbose=0) Tune prints nothing (checked on Ray 2.60: the new engine still prints
its experiment table and result paths at verbose=0).
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from dfsweep import schema

# Ray's messages that need no action in a dfsweep run, or that dfsweep shows in its own words, and why: kept in the
# log file, not shown. A warning not listed here is shown (nothing that might matter goes silent).
NOT_SHOWN = {
    "Token authentication is enabled for this Ray cluster":
        "Ray 2.60's notice at every local start; dfsweep prints the dashboard line and how to get in",
    "Generated new authentication token":
        "the same notice, the first time",
    "Experiment state snapshotting has been triggered multiple times":
        "every per-epoch checkpoint forces a snapshot (CheckpointConfig(num_to_keep=1)); a resumed sweep does not "
        "use Tune's experiment state (orchestrator.sweep.earlier_checkpoints)",
    "Experiment has been interrupted, but the most recent state was saved":
        "on Ctrl-C Tune suggests Tuner.restore; dfsweep says how to resume (dfsweep run --resume)",
    "Trials did not complete":
        "dfsweep names the failed or stopped trials itself (orchestrator.sweep._check_results)",
    "Trial task failed for trial":
        "the progress display shows the failure and where its traceback is; the traceback is in the log file",
    "which may be a performance bottleneck":
        "Tune times each step of its own loop (warn_if_slow, over 0.5 s): on a busy machine a step takes longer, "
        "which costs nothing that matters next to trials of minutes",
    "Progress bars disabled":
        "Ray Data's progress bars are off on purpose: prepare's display counts the faces",
}

_CONSOLE_LEVEL = logging.WARNING


def not_shown(message: str) -> bool:
    return any(k in message for k in NOT_SHOWN)


class _ToConsole(logging.Handler):
    """Ray's warnings and errors that are not known to be harmless, on the console (above a live display)."""

    def __init__(self, console) -> None:
        super().__init__(level=_CONSOLE_LEVEL)
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
            if not_shown(msg):
                return
            first = msg.strip().splitlines()[0] if msg.strip() else ""
            more = " (more in the log file)" if "\n" in msg.strip() or record.exc_info else ""
            self.console.print(f"[yellow]ray {record.levelname.lower()}:[/] {first}{more}", markup=True,
                               highlight=False, soft_wrap=True)
        except Exception:  # a log record must never break the run
            self.handleError(record)


def _console_handler(h: logging.Handler) -> bool:
    """A handler that writes to the terminal (Ray's PlainRayHandler is a StreamHandler to stderr)."""
    return isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)


def _ray_loggers() -> list[logging.Logger]:
    """Ray's loggers that have handlers of their own: "ray", and "ray.data" (which does not propagate)."""
    import ray  # noqa: F401
    import ray.data  # noqa: F401  (ray.data sets up its own logger when first imported: it must exist to be routed)

    return [lg for name, lg in sorted(logging.Logger.manager.loggerDict.items())
            if (name == "ray" or name.startswith("ray.")) and isinstance(lg, logging.Logger) and lg.handlers]


def log_location(run: schema.RunDir, command: str):
    """RUN_DIR/logs/<command>-<UTC time>.log: one file per invocation, so a resumed run keeps the earlier ones."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return run.logs / f"{command}-{stamp}.log"


class RunLog:
    """A context manager: Ray's output to the run's log file (see the module doc); says where at the start."""

    def __init__(self, run: schema.RunDir, console, *, command: str = "run", verbose: bool = False) -> None:
        self.run, self.console, self.verbose = run, console, verbose
        self.location = log_location(run, command)
        self.local: Path | None = None
        self._file = None
        self._saved_handlers: list[tuple[logging.Logger, list[logging.Handler]]] = []
        self._added: list[tuple[logging.Logger, logging.Handler]] = []
        self._stderr_fd: int | None = None
        self._progress_bars: bool | None = None

    def __enter__(self) -> "RunLog":
        if self.location.is_local:
            self.location.parent.mkdir()
            self.local = Path(self.location.path)
        else:
            fd, name = tempfile.mkstemp(prefix="dfsweep-", suffix=".log")
            os.close(fd)
            self.local = Path(name)
        self._file = open(self.local, "a", buffering=1, encoding="utf-8", errors="backslashreplace")
        self.console.print(f"run directory: {self.run.root}", highlight=False, soft_wrap=True)
        where = (str(self.location) if self.location.is_local
                 else f"{self.location} (uploaded when the run ends; meanwhile {self.local})")
        self.console.print(f"log: {where}" + ("" if self.verbose else " (Ray, Ray Data and Tune; --verbose shows "
                                                                     "them here)"), highlight=False, soft_wrap=True)
        self._route()
        return self

    def _route(self) -> None:
        to_file = logging.StreamHandler(self._file)
        to_file.setLevel(logging.INFO)
        to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s -- %(message)s"))
        to_console = _ToConsole(self.console)
        for lg in _ray_loggers():
            shown = [h for h in lg.handlers if _console_handler(h)]
            if not shown:
                continue
            if not self.verbose:
                self._saved_handlers.append((lg, shown))
                for h in shown:
                    lg.removeHandler(h)
                lg.addHandler(to_console)
                self._added.append((lg, to_console))
            lg.addHandler(to_file)
            self._added.append((lg, to_file))
        if self.verbose:
            return
        from ray.data import DataContext

        ctx = DataContext.get_current()
        self._progress_bars, ctx.enable_progress_bars = ctx.enable_progress_bars, False
        # Ray's C++ core logs to stderr (e.g. "Actor ... has constructor arguments in the object store"): to the file.
        try:
            sys.stderr.flush()
            self._stderr_fd = os.dup(2)
            os.dup2(self._file.fileno(), 2)
        except OSError:
            self._stderr_fd = None

    def _unroute(self) -> None:
        if self._stderr_fd is not None:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(self._stderr_fd, 2)
            os.close(self._stderr_fd)
            self._stderr_fd = None
        for lg, h in reversed(self._added):
            lg.removeHandler(h)
        for lg, hs in self._saved_handlers:
            for h in hs:
                lg.addHandler(h)
        self._added.clear()
        self._saved_handlers.clear()
        if self._progress_bars is not None:
            from ray.data import DataContext

            DataContext.get_current().enable_progress_bars = self._progress_bars
            self._progress_bars = None

    def __exit__(self, exc_type, exc, tb) -> None:
        self._unroute()
        self._file.close()
        if not self.location.is_local:
            try:
                self.location.upload(self.local)
                self.local.unlink()
            except OSError as e:
                self.console.print(f"[yellow]note:[/] the log could not be uploaded to {self.location} ({e}); it is "
                                   f"in {self.local}", highlight=False, soft_wrap=True)
                return
        if exc_type is not None and not self.verbose:
            self.console.print(f"Ray's log of this run: {self.location}", highlight=False, soft_wrap=True)


@contextmanager
def quiet_tune(quiet: bool = True) -> Iterator[int]:
    """Yields the RunConfig verbosity for the sweep: 0, with Tune's legacy output engine and no excessive-snapshot
    warning, while quiet; Tune's default (1) otherwise. The environment is restored afterwards."""
    if not quiet:
        yield 1
        return
    wanted = {"RAY_AIR_NEW_OUTPUT": "0", "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0"}
    before = {k: os.environ.get(k) for k in wanted}
    os.environ.update(wanted)
    try:
        yield 0
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
