"""A loop's state and its transitions, and the one rule for failures before the first update:
plain objects, no recipe, no Accelerator."""

from __future__ import annotations

import pytest

from launcher.runtime.failures import PermanentError, Preempted, VolumeError
from launcher.runtime.recipe import checks
from launcher.runtime.train.loop import LoopState, Phase


def test_a_fresh_loop_holds_nothing_and_owes_nothing() -> None:
    state = LoopState()
    state.loaded(0)
    assert (state.phase, state.step, state.saved_step, state.resumed_from) == (Phase.PREPARED, 0, None, None)
    assert not state.unsaved and state.reusable(resume=True) and state.reusable(resume=False)


def test_a_resumed_loop_is_reused_only_when_resuming() -> None:
    state = LoopState()
    state.loaded(4)
    assert (state.step, state.saved_step, state.resumed_from) == (4, 4, 4)
    assert state.reusable(resume=True) and not state.reusable(resume=False)


def test_a_run_past_its_checkpoint_is_unsaved_until_it_saves() -> None:
    state = LoopState()
    state.loaded(0)
    state.started()
    state.step = 3
    assert state.phase is Phase.RUN and state.unsaved
    assert not state.reusable(resume=False)  # fresh weights asked for: a run's are not
    state.saved()
    assert not state.unsaved and state.saved_step == 3 and state.reusable(resume=True)


def test_a_broken_loop_is_never_saved_nor_reused_and_stays_broken() -> None:
    state = LoopState()
    state.started()
    state.step = 2
    state.broke()
    state.started()
    assert state.phase is Phase.BROKEN and not state.unsaved
    assert not state.reusable(resume=True) and not state.reusable(resume=False)


def test_a_warm_loop_that_caught_up_holds_the_newer_checkpoint() -> None:
    state = LoopState()
    state.loaded(2)
    state.started()
    state.caught_up(6)
    assert (state.step, state.saved_step, state.resumed_from, state.unsaved) == (6, 6, 6, False)


def _raised(exc: Exception, pending: bool = True) -> BaseException:
    with pytest.raises(BaseException) as caught, \
            checks.first_update_pending(lambda: "in stage 2", None, lambda: pending):
        raise exc
    return caught.value


def test_before_the_first_update_a_failure_is_permanent_but_the_volume_s_and_a_stop_are_not() -> None:
    error = _raised(KeyError("width"))
    assert isinstance(error, PermanentError)
    assert str(error).endswith("KeyError: 'width' (in stage 2, before the first update completed: "
                               "not retried, a retry would fail the same way)")
    volume, stop = VolumeError("reload failed"), Preempted("stopped")
    assert _raised(volume) is volume and _raised(stop) is stop
    later = RuntimeError("host lost")
    assert _raised(later, pending=False) is later  # after the first update: as it is
