"""Control: requests that reach a running job from outside it (`launch stop`).

Public face:

    stop.StopRequest            what was asked: graceful (at the next update) or now
    stop.FolderRequests         the local store: one JSON file per run in a folder
    stop.StopWatch              what a loop asks, cheaply, at each update: has a stop been requested?
    stop.request_key(...)       the key a run's requests are kept under (its run id)

Standard library only: it runs in the container, where the generated app hands the session a
`modal.Dict` in place of a `FolderRequests` (both have `get`).
"""
