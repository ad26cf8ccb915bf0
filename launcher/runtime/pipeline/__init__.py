"""A job's pipeline: prepare, train, evaluate, run in order by one driver.

Public face: `driver.run_pipeline(spec, caller, volume, ...)` (the driver, on Modal and
locally alike, behind a `StageCaller`), `stage_session.StageSession` (the object behind a
stage's Modal class), and `stages.StageContext` (what a user's stage function is handed).

    stages.py         the stage protocol, and what a finished stage leaves on the volume
                      (`StageFolders`, results, digests of its inputs and of prepared data)
    stage_session.py  the runtime behind `prepare` or `evaluate`, through the container's hooks
    driver.py         the stages in order: skip an unchanged prepare, stop at a failure
    results.py        `StageName`, `Status`, `StageResult`, `PipelineResult`: results as types
"""
