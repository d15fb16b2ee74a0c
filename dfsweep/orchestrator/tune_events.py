"""The sweep's events (see dfsweep.events) from Ray Tune's driver loop, as a Tune callback."""

from __future__ import annotations

from ray.tune import Callback

from dfsweep import events


class EmitEvents(Callback):
    """`checkpoint` (trial, epoch) once the Tune step that registered the checkpoint has ended, and `trial_done`
    (trial, status) when a trial ends."""

    def __init__(self) -> None:
        self.registered: list[dict] = []

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info) -> None:
        self.registered.append(dict(trial=trial.config["trial"]["trial_id"], epoch=trial.last_result.get("epoch")))

    def on_step_end(self, iteration, trials, **info) -> None:
        while self.registered:
            events.emit("checkpoint", **self.registered.pop(0))

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        events.emit("trial_done", trial=trial.config["trial"]["trial_id"], status="TERMINATED")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        events.emit("trial_done", trial=trial.config["trial"]["trial_id"], status="ERROR")
