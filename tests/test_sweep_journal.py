"""The study's journal: on the coordinator's disk, copied to the volume, restored from there."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.storages.journal import JournalFileBackend, JournalStorage

from launcher.runtime.sweep.journal import JOURNAL, StudyStore, open_study

SPACE = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}


def study(store: StudyStore) -> optuna.Study:
    return open_study(store, "s", "min", optuna.samplers.RandomSampler(0), optuna.pruners.NopPruner())


def test_a_new_coordinator_restores_the_study_from_the_volume(tmp_path: Path) -> None:
    first = StudyStore(tmp_path / "own-1", tmp_path / "volume")
    s = study(first)
    done = s.ask(SPACE)
    s.tell(done, 0.5)
    running = s.ask(SPACE)
    running.report(0.7, 10)
    first.publish()
    assert first.copies == 1
    later = StudyStore(tmp_path / "own-2", tmp_path / "volume")  # another machine's disk
    assert later.restored
    trials = study(later).get_trials()
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING]
    assert trials[0].params == done.params and trials[1].intermediate_values == {10: 0.7}


def test_a_change_after_the_last_copy_is_not_on_the_volume(tmp_path: Path) -> None:
    store = StudyStore(tmp_path / "own", tmp_path / "volume")
    s = study(store)
    s.tell(s.ask(SPACE), 0.1)
    store.publish()
    s.tell(s.ask(SPACE), 0.2)  # not published: a coordinator killed here loses only this
    assert len(study(StudyStore(tmp_path / "other", tmp_path / "volume")).get_trials()) == 1


def test_optuna_s_own_file_backend_reads_the_copy(tmp_path: Path) -> None:
    store = StudyStore(tmp_path / "own", tmp_path / "volume")
    s = study(store)
    s.tell(s.ask(SPACE), 0.3)
    store.publish()
    theirs = JournalStorage(JournalFileBackend(str(tmp_path / "volume" / JOURNAL)))
    assert optuna.load_study(study_name="s", storage=theirs).best_value == 0.3
