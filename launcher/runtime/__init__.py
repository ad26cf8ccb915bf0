"""The runtime: what runs inside a container (or a local worker) once a job is launched.

It imports neither click, Jinja nor jsonschema, and never modal: the generated app hands it
its volume. Each concern is a package, its public face named in the package's docstring:

    train/       the train stage: `train.session.Session` behind the app's Modal class, its loop
    checkpoint/  `checkpoint.manager.checkpointer`: resume and save; the store, writer, snapshot
    pipeline/    `pipeline.driver.run_pipeline`, `pipeline.stage_session.StageSession`, the stages
    recipe/      `recipe.protocol.Recipe`, the protocol user code implements, and its checks
    lifecycle/   a process from start to end: container hooks, signals, lifeline, rendezvous
    storage/     `storage.volume.Volume` (commit, reload), the local volume, storage errors

Small concerns shared by all of them stay modules here:

    events.py    log lines for people and `@@launch` events for the local supervisor
    failures.py  how an attempt ended: exit codes and the error classes behind them
    faults.py    fault injection at named points, for the reliability tests
    lease.py     one run of a job at a time: the lease file in the job's folder
    settings.py  `RuntimeSettings`: every LAUNCH_* variable, parsed once at an entry
"""
