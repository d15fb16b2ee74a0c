"""`dfsweep run --dry-run`: the planned trials, grouped into the arms of the grid, what each would still need to run,
and what the sweep would cost (orchestrator/cost.py); reads the run directory, changes nothing."""

from __future__ import annotations

from collections import Counter

from dfsweep import schema
from dfsweep.config import Config
from dfsweep.orchestrator.cost import describe, split_sizes, trial_costs
from dfsweep.orchestrator.sweep import plan_trials, sweep_state


def _crop_counts(run: schema.RunDir) -> dict[str, int] | None:
    """Crops by "domain/split" of a prepared run (its manifest's ok rows), else None."""
    if not (run.crops_done.exists() and run.manifest.exists()):
        return None
    m = run.manifest.read_parquet(columns=["domain", "split", "status"]).to_pylist()
    return dict(Counter(f"{r['domain']}/{r['split']}" for r in m if r["status"] == schema.STATUS_OK))


def show_plan(cfg: Config, run: schema.RunDir, console) -> None:
    """Print the arms (one row each: its settings, its trials' state and estimated minutes), then the cost."""
    from rich.table import Table

    trials = plan_trials(cfg)
    state = sweep_state(cfg, run)  # read-only: a dry run sets nothing aside
    todo = {t["trial_id"] for t in state.todo}
    console.print(f"{len(todo)} of {len(trials)} trials to run: "
                  + (", ".join(t["trial_id"] for t in state.todo) or "none (all have scores)"))
    for tid, why in state.unreadable.items():
        console.print(f"[yellow]{why}[/]: it would be set aside and trial {tid} run again")
    if state.note:
        console.print(f"[yellow]note:[/] {state.note}")
    sizes = split_sizes(cfg, _crop_counts(run))
    costs = {c.trial_id: c for c in trial_costs(cfg, trials, sizes)} if sizes else {}
    table = Table(title=f"planned arms ({len(cfg.sweep.seeds)} seed(s) each; "
                        f"{cfg.sweep.cpus_per_trial:g} CPU, {cfg.sweep.gpus_per_trial:g} GPU per trial)")
    numeric = ("unfrozen layers", "adapt share", "fine-tune epochs", "fine-tune lr", "trials to run", "est. minutes")
    for col in ("arm", "role", "augmentation", "unfrozen layers", "adapt share", "selection", "fine-tune epochs",
                "fine-tune lr", "trials to run", "est. minutes"):
        table.add_column(col, justify="right" if col in numeric else "left", overflow="fold")
    arms: dict[str, list[dict]] = {}
    for t in trials:
        arms.setdefault(f"{t['variant']}/{t['arm']}", []).append(t)
    from dfsweep.trainables.variants import get_variant

    for name, ts in arms.items():
        t = ts[0]
        minutes = sum(costs[x["trial_id"]].seconds for x in ts if x["trial_id"] in todo) / 60 if costs else None
        settings = ((t["augmentation"], str(t["unfreeze_layers"]), f"{t['adapt_share']:g}", t["selection"],
                     str(t["finetune_epochs"]), f"{t['finetune_lr']:g}")
                    if get_variant(t["variant"]).arms else ("",) * 6)
        table.add_row(name, get_variant(t["variant"]).role, *settings,
                      f"{sum(x['trial_id'] in todo for x in ts)} of {len(ts)}",
                      "?" if minutes is None else f"{minutes:.1f}")
    console.print(table)
    if sizes:
        console.print(describe(cfg, [costs[t["trial_id"]] for t in trials if t["trial_id"] in todo], sizes))
    else:
        console.print("estimated cost: unknown until prepare has counted the crops (a per-class cap is 0: every file)")
    levels = ", ".join(f"{p} {lv}" for p, lv in cfg.train.perturbation_levels()) or "none"
    console.print(f"test-time perturbations (made on the fly by every trial): {levels}; frozen-backbone features "
                  f"{'cached and shared' if cfg.sweep.share_work else 'recomputed by every trial'}")
