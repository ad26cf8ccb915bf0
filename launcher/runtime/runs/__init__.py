"""Runs: one record per launch, kept in the job's folder on the volume, next to its checkpoints.

Public face:

    record.RunRecord            the typed record (every field documented in docs/runs.md)
    record.new_run_id()         the short, start-time-sortable id (`20261208-010203-a1b2`)
    record.record_path(job_dir, run_id)   `<job>/runs/<run id>/run.json`
    recorder.Recorder           the coordinator's writer: one writer per record, each change
                                written atomically (a new file renamed into place)
    liveness.effective_status(record, alive)   running / finished / failed / stopped / pruned,
                                or `dead` for a record that says running with nobody alive
    lookup.Source, lookup.list_runs(source, jobs), lookup.find(prefix, runs)
                                read records from a folder or a Modal volume; find one by a
                                unique prefix of its id (`RunNotFound`, in one line)

Standard library only: the coordinator that writes records runs in the container too.
"""
