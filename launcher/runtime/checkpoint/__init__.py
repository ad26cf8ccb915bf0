"""Checkpoints: how a training loop's state is saved, found again and loaded.

Public face: `manager.checkpointer(ctx, accelerator) -> Checkpointer`, the checkpoint manager
the loop calls (`resume`, `newest_step`, `save`, `wait`, `close`; `LoadFailed`, `Restored`).

    store.py     the checkpoint store on a directory: write, verify, find the newest usable
                 checkpoint, set aside, retain (`CheckpointError`, `Incompatible`)
    manager.py   the checkpoint manager: resume policy, loading, saving (sync or background),
                 commit with the lease's heartbeat, log mirroring; one process or many
    snapshot.py  a checkpoint's state copied to host memory in the training thread
    writer.py    the background writer: one thread, at most one write in flight
    hparams.py   optimizer hyperparameters from the spec, kept across a load

Nothing here imports the loop or the session: they hand the manager a `LoopContext`.
"""
