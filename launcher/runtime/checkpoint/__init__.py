"""Checkpoints: how a training loop's state is saved, found again and loaded.

Public face: `manager.checkpointer(ctx, accelerator) -> Checkpointer`, the checkpoint manager
the loop calls (`resume`, `newest_step`, `save`, `wait`, `close`; `LoadFailed`, `Restored`).

    store.py     the checkpoint store on a directory: write, verify, find the newest usable
                 checkpoint, set aside, retain (`CheckpointError`, `Incompatible`)
    manager.py   the checkpoint manager: loading, saving (sync or background), the
                 distributed protocol; one process or many. Delegates to:
    resume_policy.py  pure: a manifest and what this run is in, a verdict out (Usable, Skip,
                 Refuse), and what changed since a checkpoint; imports no torch
    publisher.py set aside, publish, mirror the logs, commit with the lease's heartbeat,
                 retain (global rank 0 alone); imports no torch
    snapshot.py  a checkpoint's state copied to host memory in the training thread
    writer.py    the background writer: one thread, at most one write in flight
    hparams.py   optimizer hyperparameters from the spec, kept across a load

Nothing here imports the loop or the session: they hand the manager a `LoopContext`.
"""
