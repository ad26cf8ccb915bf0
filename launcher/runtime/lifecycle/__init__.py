"""A runtime process from start to end: its hooks, signals, lifeline and rendezvous.

    container.py   `run_container`, `run_input`: a session's hooks in the order Modal runs them
    signals.py     `StopFlag`: SIGINT/SIGTERM ask for a graceful stop between updates
    lifeline.py    a local worker dies with the process that started it
    process.py     start-up and exit where the interpreter's defaults cost seconds
    rendezvous.py  rank 0's address and this node's rank for a distributed run
    workdir.py     a local worker that runs from the shipped tree, as a container does
    timeline.py    wall-clock marks of start-up and exit, for the start-up bench
"""
