"""The sweep's events (see dfsweep.events) and its progress display (orchestrator.progress) from Ray Tune's driver
loop, as Tune callbacks."""

from __future__ import annotations

from ray.tune import Callback

from dfsweep import events


def _tid(trial) -> str:
    return trial.config["trial"]["trial_id"]


class EmitEvents(Callback):
    """`checkpoint` (trial, epoch) once the Tune step that registered the checkpoint has ended, and `trial_done`
    (trial, status) when a trial ends."""

    def __init__(self) -> None:
        self.registered: list[dict] = []

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info) -> None:
        self.registered.append(dict(trial=_tid(trial), epoch=trial.last_result.get("epoch")))

    def on_step_end(self, iteration, trials, **info) -> None:
        while self.registered:
            events.emit("checkpoint", **self.registered.pop(0))

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        events.emit("trial_done", trial=_tid(trial), status="TERMINATED")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        events.emit("trial_done", trial=_tid(trial), status="ERROR")


def error_line(trial) -> str:
    """The last line of the trial's error file (the exception and its message) and where its traceback is kept: the
    trial's folder under the run's tune/ (Tune writes the file on the driver, then syncs it there)."""
    try:
        with open(trial.error_file, encoding="utf-8", errors="replace") as f:
            lines = [ln.strip() for ln in f if ln.strip()]
    except (OSError, TypeError):
        lines = []
    last = lines[-1] if lines else "no error message"
    name = trial.run_metadata.error_filename
    where = f"{trial.path}/{name}" if trial.path and name else trial.error_file
    return (last[:200] + "…" if len(last) > 200 else last) + (f" (traceback: {where})" if where else "")


class ShowProgress(Callback):
    """Feeds an orchestrator.progress.SweepProgress: a trial's start, each of its results, its end, failure or
    restart (Tune retries it from its last checkpoint), and a tick at every step of Tune's loop."""

    def __init__(self, display) -> None:
        self.display = display

    def __getstate__(self) -> dict:
        # Tune pickles its run config, callbacks included, into the experiment folder; the display (a console, a
        # lock) stays with this process: an unpickled copy shows nothing.
        return {"display": None}

    def _show(self, what: str, *args) -> None:
        if self.display is not None:
            getattr(self.display, what)(*args)

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self._show("started", _tid(trial))

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self._show("result", _tid(trial), result)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._show("finished", _tid(trial))

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        self._show("restarting", _tid(trial), trial.num_failures, error_line(trial))

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._show("failed", _tid(trial), error_line(trial))

    def on_step_end(self, iteration, trials, **info) -> None:
        self._show("tick")
