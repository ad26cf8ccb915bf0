"""The study's storage: a journal file on the coordinator's disk, mirrored to the volume.

Optuna's JournalStorage appends one line per change to a file. The file lives in a folder of
the coordinator's own (`local`), where its file lock works; after each change it is copied to
the sweep's folder on the volume (written under a temporary name, then renamed, so a reader
never sees half a copy). At start, a copy on the volume is restored first: that is how a
restarted coordinator (Ctrl-C locally, a preemption on Modal) finds its finished trials.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import optuna
from optuna.storages.journal import JournalFileBackend, JournalStorage

JOURNAL = "journal.log"


class StudyStore:
    def __init__(self, local: Path, remote: Path) -> None:
        """`local`: the coordinator's own folder; `remote`: the sweep's folder on the volume."""
        self.local, self.remote = local, remote
        self.lock = threading.Lock()
        self.copy_seconds = 0.0  # time spent mirroring, for the overhead figure
        self.copies = 0

    @property
    def restored(self) -> bool:
        return (self.remote / JOURNAL).is_file()

    def storage(self) -> JournalStorage:
        self.local.mkdir(parents=True, exist_ok=True)
        if self.restored:
            shutil.copyfile(self.remote / JOURNAL, self.local / JOURNAL)
        return JournalStorage(JournalFileBackend(str(self.local / JOURNAL)))

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
