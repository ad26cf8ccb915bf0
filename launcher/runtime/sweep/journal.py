"""The study's storage: a journal file on the coordinator's disk, mirrored to the volume.

Optuna's JournalStorage appends one JSON line per change. The lines are kept in a file in a
folder of the coordinator's own (`local`); after each change the file is copied to the sweep's
folder on the volume (written under a temporary name, then renamed, so a reader never sees
half a copy). At start, a copy on the volume is restored first: that is how a restarted
coordinator (Ctrl-C locally, a preemption on Modal) finds its finished trials.

The backend is `OwnJournal`, not Optuna's JournalFileBackend: that one takes a file lock and
fsyncs on every append (about 8 ms each on a 2-core machine, 20 appends a trial), which is for
several processes sharing one file. Here one process writes, and what must survive it is the
copy on the volume. The format is the same JSON lines, so either backend reads the other's file.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import optuna
from optuna.storages.journal import BaseJournalBackend, JournalStorage

JOURNAL = "journal.log"


class OwnJournal(BaseJournalBackend):
    """Journal lines in memory and appended to `path`, for one writing process (the
    coordinator; JournalStorage serialises its own threads)."""

    def __init__(self, path: Path) -> None:
        text = path.read_text("utf-8") if path.is_file() else ""
        self.logs: list[dict[str, Any]] = [json.loads(line) for line in text.splitlines() if line.strip()]
        self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115  (open while the study is)

    def read_logs(self, log_number_from: int) -> Iterable[dict[str, Any]]:
        return self.logs[log_number_from:]

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        self.logs.extend(logs)
        self.file.write("".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs))
        self.file.flush()  # seen by the next copy to the volume


class StudyStore:
    def __init__(self, local: Path, remote: Path) -> None:
        """`local`: the coordinator's own folder; `remote`: the sweep's folder on the volume."""
        self.local, self.remote = local, remote
        self.lock = threading.Lock()
        self.copy_seconds = 0.0  # time spent mirroring, for the overhead figure
        self.copies = 0
        self.journal: JournalStorage | None = None  # made by storage()

    @property
    def restored(self) -> bool:
        return (self.remote / JOURNAL).is_file()

    def storage(self) -> JournalStorage:
        self.local.mkdir(parents=True, exist_ok=True)
        if self.restored:
            shutil.copyfile(self.remote / JOURNAL, self.local / JOURNAL)
        self.journal = JournalStorage(OwnJournal(self.local / JOURNAL))
        return self.journal

    def trial_id(self, study_name: str, number: int) -> int:
        """The storage's id of a study's trial, through the storage's public face (a trial that
        was running when the coordinator stopped is re-opened under it)."""
        assert self.journal is not None, "storage() opens the journal first"
        study = self.journal.get_study_id_from_name(study_name)
        return self.journal.get_trial_id_from_study_id_trial_number(study, number)

    def publish(self) -> None:
        """Copy the journal to the volume: after every change of the study."""
        started = time.perf_counter()
        with self.lock:
            self.remote.mkdir(parents=True, exist_ok=True)
            tmp = self.remote / f".tmp-{JOURNAL}-{os.getpid()}"
            shutil.copyfile(self.local / JOURNAL, tmp)
            os.replace(tmp, self.remote / JOURNAL)
            self.copies += 1
            self.copy_seconds += time.perf_counter() - started


def open_study(store: StudyStore, name: str, direction: str, sampler: optuna.samplers.BaseSampler,
               pruner: optuna.pruners.BasePruner) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(storage=store.storage(), study_name=name, sampler=sampler,
                               pruner=pruner, load_if_exists=True,
                               direction="minimize" if direction == "min" else "maximize")
