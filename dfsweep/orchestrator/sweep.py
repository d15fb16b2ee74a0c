"""Plan the trials of a sweep and run them with Ray Tune, one trial per (variant, augmentation, seed).

V1 has no augmentation axis: it runs once per seed, not once per grid point. Trials share the frozen-backbone
feature cache (sweep.share_work); the degraded test sets are made on the fly by each trial, never stored. A trial
whose score file exists and reads back is not run again, so a resumed `dfsweep run` finishes only what is missing and
never duplicates a trial's scores; a score file that does not read back (cut short, not Parquet, not scores) is set
aside in scores/_bad/ and its trial runs again. An interrupted sweep (driver killed, Ctrl-C) goes on in a new Tune
experiment (tune/sweep-002, ...) in which each unfinished trial continues from its last epoch checkpoint in an
earlier one (earlier_checkpoints). The plan is written beside the scores (scores/_PLAN.json) so that the
report covers exactly the planned trials: seeds or variants added to a run's config run only the new trials, and
score files of trials dropped from it stay in scores/ but out of the report.
"""

from __future__ import annotations

import json
import posixpath
import zipfile
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone

from dfsweep import __version__, schema
from dfsweep.config import Config, TrainConfig
from dfsweep.orchestrator.runlog import quiet_tune
from dfsweep.storage import Location
from dfsweep.trainables.variants import get_variant, trial_id
from dfsweep.verdict.scores import ScoreFileError, not_in_sweep_warning, read_score_file, write_plan


# What a trial of a variant without arms (the baseline V1, the diagnostic cue) records for the grid's axes: it
# fine-tunes nothing, adapts on nothing, and selects on source val.
NO_ARM = dict(arm="none", augmentation="none", unfreeze_layers=0, adapt_share=0.0, selection="source_val")


def arm_name(point: dict, base: dict) -> str:
    """A grid point's id: its augmentation preset, then what it changes from the base point (train's unfrozen depth,
    adapt share, fine-tuning epochs and rate; source-val selection): `u<layers>`, `a<share in %>`, `tval`,
    `e<epochs>`, `lr<rate>`. The paper's V2 is "paper"."""
    parts = [point["augmentation"]]
    if point["unfreeze_layers"] != base["unfreeze_layers"]:
        parts.append(f"u{point['unfreeze_layers']}")
    if point["adapt_share"] != base["adapt_share"]:
        parts.append(f"a{point['adapt_share'] * 100:g}")
    if point["selection"] == "target_val":
        parts.append("tval")
    if point["finetune_epochs"] != base["finetune_epochs"]:
        parts.append(f"e{point['finetune_epochs']}")
    if point["finetune_lr"] != base["finetune_lr"]:
        parts.append(f"lr{point['finetune_lr']:g}")
    return "-".join(parts)


def candidate_arms(cfg: Config) -> list[dict]:
    """The arms of the variants that take them (V2): sweep.arms one by one, else every combination of the grid's
    axes; each {arm, augmentation, unfreeze_layers, adapt_share, selection, finetune_epochs, finetune_lr}, in config
    order. ValueError for an
    unknown augmentation preset, two arms of one name or two arms at the same grid point."""
    from dfsweep.config import ArmSpec
    from dfsweep.trainables.augment import get_preset

    sw, t = cfg.sweep, cfg.train
    base = dict(unfreeze_layers=t.unfreeze_last_layers, adapt_share=t.adapt_share, finetune_epochs=t.finetune_epochs,
                finetune_lr=t.finetune_lr)
    specs = sw.arms or [ArmSpec(augmentation=a, unfreeze_layers=u, adapt_share=s, selection=sel)
                        for a in sw.augmentations for u in sw.unfreeze_layers or (base["unfreeze_layers"],)
                        for s in sw.adapt_shares or (base["adapt_share"],) for sel in sw.selections]
    arms: list[dict] = []
    for spec in specs:
        get_preset(spec.augmentation)  # an unknown preset fails here, before anything runs
        given = dict(unfreeze_layers=spec.unfreeze_layers, adapt_share=spec.adapt_share,
                     finetune_epochs=spec.finetune_epochs, finetune_lr=spec.finetune_lr)
        point = dict(augmentation=spec.augmentation, selection=spec.selection,
                     **{k: base[k] if v is None else type(base[k])(v) for k, v in given.items()})
        name = spec.name or arm_name(point, base)
        for other in arms:
            if other["arm"] == name:
                raise ValueError(f"two arms are named {name!r}: give them other names (sweep.arms name)")
            if {k: other[k] for k in point} == point:
                raise ValueError(f"arms {other['arm']!r} and {name!r} are the same grid point: drop one")
        arms.append(dict(arm=name, **point))
    return arms


def plan_trials(cfg: Config) -> list[dict]:
    """Every trial of the sweep, seeds outermost so that partial results are balanced across variants: one per seed
    and variant, and for the variants with arms (V2) one per seed and arm. Each trial dict holds trial_id, variant,
    seed and its arm's settings (NO_ARM for the others)."""
    arms = candidate_arms(cfg)
    trials = []
    for seed in cfg.sweep.seeds:
        for name in cfg.sweep.variants:
            for arm in arms if get_variant(name).arms else [NO_ARM]:
                trials.append(dict(trial_id=trial_id(name, arm["arm"], seed), variant=name, **arm, seed=int(seed)))
    return trials


def trial_resources(cfg: Config) -> dict:
    return {"cpu": cfg.sweep.cpus_per_trial, "gpu": cfg.sweep.gpus_per_trial}


def _tune_storage(run: schema.RunDir) -> dict:
    """Tune's storage arguments for the run's tune/ folder: a local path, or a bucket path plus its filesystem (Tune
    refuses an s3:// URI together with a filesystem, so the URI's scheme stays out)."""
    return dict(storage_path=run.tune.path, storage_filesystem=None if run.tune.is_local else run.tune.fs)


def _new_tuner(cfg: Config, run: schema.RunDir, trainable, todo: list[dict], name: str, *, verbose: int = 1,
               callbacks: tuple = ()):
    from ray import tune

    from dfsweep.orchestrator.tune_events import EmitEvents

    return tune.Tuner(
        trainable,
        param_space={"trial": tune.grid_search(todo)},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=cfg.sweep.max_concurrent_trials or None,
            trial_name_creator=lambda t: t.config["trial"]["trial_id"],
            trial_dirname_creator=lambda t: t.config["trial"]["trial_id"],
        ),
        run_config=tune.RunConfig(
            name=name,  # one experiment per invocation: sweep-001, sweep-002, ... under tune/
            **_tune_storage(run),  # checkpoints and per-epoch results live with the rest of the run
            failure_config=tune.FailureConfig(max_failures=cfg.sweep.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),  # the last epoch is all a restart needs
            # The sweep's events (dfsweep.events): a checkpoint registered, a trial done; and the progress display.
            callbacks=[EmitEvents(), *callbacks],
            verbose=verbose,  # 0 under runlog.quiet_tune (dfsweep's display instead), else Tune's own tables
        ),
    )


def _check_results(results) -> None:
    """Raise on failed trials, and again on Ctrl-C: Tune takes SIGINT itself (it stops every trial, marks it
    terminated and returns), so a trial that did not fail and did not report its last phase ("done", after its score
    file is written) was stopped by it."""
    failed = [r for r in results if r.error is not None]
    if failed:
        names = ", ".join(r.config["trial"]["trial_id"] for r in failed)
        raise RuntimeError(f"{len(failed)} trial(s) failed: {names}; first error: {failed[0].error}")
    stopped = [r.config["trial"]["trial_id"] for r in results if (r.metrics or {}).get("phase") != "done"]
    if stopped:
        raise KeyboardInterrupt(f"the sweep was stopped (Ctrl-C) before {', '.join(stopped)} ended")


@dataclass(frozen=True)
class SweepState:
    """The run's score files against the plan of its config."""

    planned: tuple[dict, ...]
    todo: tuple[dict, ...]  # planned trials without a usable score file
    unreadable: dict[str, str]  # trial id -> why its score file cannot be used (it runs again)
    not_in_sweep: tuple[str, ...]  # names of score files of trials the config does not plan

    @property
    def note(self) -> str | None:
        return not_in_sweep_warning(list(self.not_in_sweep)) if self.not_in_sweep else None


def sweep_state(cfg: Config, run: schema.RunDir) -> SweepState:
    """Read-only: which planned trials have a score file that reads back against the scores schema."""
    planned = plan_trials(cfg)
    ids = {t["trial_id"] for t in planned}
    unreadable: dict[str, str] = {}
    todo = []
    for t in planned:
        f = run.score_file(t["trial_id"])
        if not f.exists():
            todo.append(t)
            continue
        try:
            read_score_file(f)
        except ScoreFileError as exc:
            unreadable[t["trial_id"]] = exc.problem
            todo.append(t)
    stale = tuple(f.name for f in run.scores.glob("*.parquet") if f.stem not in ids)
    return SweepState(tuple(planned), tuple(todo), unreadable, stale)


def set_aside(f: Location) -> Location:
    """Move a score file to scores/_bad/<name>.<UTC time> (kept, out of every *.parquet listing); returns where."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    dst = f.parent / schema.SCORES_SET_ASIDE / f"{f.name}.{stamp}"
    f.move(dst)
    return dst


def todo_trials(cfg: Config, run: schema.RunDir, log=print) -> list[dict]:
    """The planned trials without a usable score file, once the plan is written (scores/_PLAN.json) and every
    score file that does not read back is set aside (scores/_bad/), so that its trial runs again."""
    state = sweep_state(cfg, run)
    for tid, why in state.unreadable.items():
        aside = set_aside(run.score_file(tid))
        log(f"[yellow]{why}[/]: set aside as {aside}; trial {tid} runs again")
    write_plan(run.scores, list(state.planned), dfsweep_version=__version__)
    if state.note:
        log(f"[yellow]note:[/] {state.note}")
    return list(state.todo)


def earlier_checkpoints(run: schema.RunDir, trial: str) -> list[tuple[int, str]]:
    """(epoch, path under tune/) of every whole epoch checkpoint an earlier sweep of this run left for the trial,
    newest epoch first. A resumed trial starts from the first of them that reads back (trainables.checkpoint).

    This, not Tune's restore of its own experiment state, is how a sweep resumes: Tune uploads that state in the
    background after each checkpoint, so a driver killed meanwhile leaves it half-written and unrestorable. A trial
    killed while it wrote a checkpoint leaves that one cut: it is left out here (its state.json does not parse, or
    its arrays.npz has no zip directory, which is written last), and the one before it is used."""
    found = []
    for state in run.tune.glob(f"sweep-*/{trial}/checkpoint_*/state.json"):
        try:
            epoch = int(json.loads(state.read_text())["epoch"])
            with state.fs.open_input_file((state.parent / "arrays.npz").path) as f:
                zipfile.ZipFile(f).close()
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile):
            continue
        found.append((epoch, posixpath.relpath(state.parent.path, run.tune.path)))
    return sorted(found, reverse=True)


def trial_epochs(trial: dict, train: TrainConfig) -> int | None:
    """How many epochs a trial reports (the progress display's epoch / total): V1 its head epochs, a V2 arm head and
    its own fine-tuning epochs; None for a variant without epochs (the cue)."""
    finetune = int(trial.get("finetune_epochs", train.finetune_epochs))
    return {"v1": train.head_epochs, "v2": train.head_epochs + finetune}.get(trial["variant"])


def run_sweep(cfg: Config, run: schema.RunDir, log=print, console=None) -> list[str]:
    """Run every planned trial that has no usable score file yet (see todo_trials); returns the ids of the trials
    it ran. With a console, its progress is shown there (orchestrator.progress) and Tune's own reporter is off;
    without one, Tune prints its status tables as usual."""
    planned = plan_trials(cfg)
    todo = todo_trials(cfg, run, log)
    if not todo:
        log(f"all {len(planned)} trials already have scores in {run.scores}")
        return []
    from ray import tune

    from dfsweep.cluster import ensure_ray
    from dfsweep.trainables.train import tune_trainable, tune_trial_class

    log(f"{len(todo)} of {len(planned)} trials to run: {', '.join(t['trial_id'] for t in todo)}")
    ran = [t["trial_id"] for t in todo]
    ensure_ray()
    trainable = tune_trial_class(tune.with_resources(  # trial actors that the dashboard lists by trial id
        tune.with_parameters(tune_trainable, run_dir=str(run.root), train_cfg=cfg.train, cpus=cfg.sweep.cpus_per_trial,
                             feature_cache=cfg.sweep.share_work),
        trial_resources(cfg)))
    experiments = run.tune.glob("sweep-*")
    # An interrupted sweep's trials continue from their last epoch checkpoint.
    todo = [dict(t, resume_from=earlier_checkpoints(run, t["trial_id"])) for t in todo]
    for t in todo:
        if t["resume_from"]:
            epoch, path = t["resume_from"][0]
            log(f"resuming {t['trial_id']} after epoch {epoch} (tune/{path})")
    name = f"sweep-{len(experiments) + 1:03d}"
    display = None
    if console is not None:
        from dfsweep.orchestrator.progress import SweepProgress
        from dfsweep.orchestrator.tune_events import ShowProgress

        display = SweepProgress(console, todo, {t["trial_id"]: trial_epochs(t, cfg.train) for t in todo}, name=name,
                                max_failures=cfg.sweep.max_failures)
    with quiet_tune(display is not None) as verbose, display or nullcontext():
        callbacks = (ShowProgress(display),) if display else ()
        # Inside the display, so that a Ctrl-C (KeyboardInterrupt from _check_results) marks its running trials.
        _check_results(_new_tuner(cfg, run, trainable, todo, name, verbose=verbose, callbacks=callbacks).fit())
    missing = [t["trial_id"] for t in planned if not run.score_file(t["trial_id"]).exists()]
    if missing:
        raise RuntimeError(f"trials finished without a score file: {missing}")
    return ran
