"""Sweeps: one coordinator owns the search over a job's parameters, trials are runs of the job.

Public face:
- `coordinator.Coordinator(sweep, store, runner, budget)`: `run()` asks Optuna for trials,
  starts up to `sweep.parallel` of them through a `TrialRunner`, feeds each trial's objective
  reports to the pruner (a pruned trial is asked to stop gracefully), tells Optuna how each
  ended, and never starts a trial the budget cannot cover; after a restart it resumes the
  study: finished trials stand, trials that were running run again with their own parameters
  (resuming from their checkpoints), new ones are asked for only after them.
- `journal.StudyStore`: Optuna's JournalStorage in a file on the coordinator's own disk,
  copied to the sweep's folder on the volume after each change and restored from there at
  start (volumes have no locking and the last write wins, so no other process writes it).
- `search`: the sampler (grid, random, TPE), the pruner (none, median, Hyperband) and the
  distributions for a `launcher.spec.sweep.Sweep`.
- `budget.Budget`: the spend estimate from the plan's prices and the start rule.
- `picture.draw(study, sweep, path)`: the objective over updates for every trial (pruned ones
  marked) and against the most important parameter (matplotlib, the `report` extra).

Optuna (the `sweep` extra) is imported by this package only; the CLI checks for it first.
"""
