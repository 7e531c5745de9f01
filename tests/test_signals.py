import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from botter.errors import BotterError
from botter.signals import Held, positions

RULE = {"threshold_up": 0.6, "threshold_down": 0.6}


def test_thresholds_long_short_flat_and_ties():
    p_up = [0.7, 0.2, 0.5, 0.6, 0.65, 0.6]
    p_down = [0.3, 0.8, 0.5, 0.4, 0.62, 0.6]
    assert positions(p_up, p_down, **RULE).tolist() == [1, -1, 0, 1, 1, 0]
    assert positions(p_up, p_down, **RULE, long_only=True).tolist() == [1, 0, 0, 1, 1, 1]
    assert positions(p_up, p_down, **RULE).dtype == np.int8


def test_min_hold_keeps_an_entered_position():
    #            signal:  L  F  S  S  F  F  L  F  F  F
    p_up = np.array([.9, .5, .1, .1, .5, .5, .9, .5, .5, .5])
    p_down = 1 - p_up
    assert positions(p_up, p_down, **RULE, min_hold=1).tolist() == [1, 0, -1, -1, 0, 0, 1, 0, 0, 0]
    # long held through the flat signal (0-2), short from 3 held through 4-5, long at 6 held to 8
    assert positions(p_up, p_down, **RULE, min_hold=3).tolist() == [1, 1, 1, -1, -1, -1, 1, 1, 1, 0]


probs = st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=60)


@settings(max_examples=200, deadline=None)
@given(probs, st.integers(1, 6), st.booleans(), st.floats(0.05, 1), st.floats(0.05, 1))
def test_causal_prefix_equals_full_history(rows, min_hold, long_only, up, down):
    """The paper loop calls positions on the history so far: each prefix gives the full run's value."""
    p_up, p_down = np.array(rows).T
    kw = {"threshold_up": up, "threshold_down": down, "long_only": long_only, "min_hold": min_hold}
    full = positions(p_up, p_down, **kw)
    for t in range(len(rows)):
        assert positions(p_up[:t + 1], p_down[:t + 1], **kw)[-1] == full[t]


@settings(max_examples=300, deadline=None)
@given(probs, st.integers(1, 6), st.booleans(), st.floats(0.05, 1), st.floats(0.05, 1), st.data())
def test_chunks_with_the_state_carried_equal_one_call_on_the_whole(rows, min_hold, long_only, up, down, data):
    """The paper loop calls positions on each new candle with the Held of the candles before: any split
    into chunks gives the whole call's positions, and the same state at the end."""
    p_up, p_down = np.array(rows).T
    kw = {"threshold_up": up, "threshold_down": down, "long_only": long_only, "min_hold": min_hold}
    whole = positions(p_up, p_down, **kw)
    cuts = sorted(data.draw(st.sets(st.integers(1, len(rows) - 1), max_size=len(rows) - 1)) if len(rows) > 1 else [])
    held, parts = Held(), []
    for a, b in zip([0, *cuts], [*cuts, len(rows)]):
        part = positions(p_up[a:b], p_down[a:b], **kw, held=held)
        held = held.after(part)
        parts.append(part)
    assert np.concatenate(parts).tolist() == whole.tolist()
    assert held == Held().after(whole)
    # the state by hand: the last position and the length of its last run
    run = len(whole) - np.flatnonzero(np.append(-9, whole) != whole[-1])[-1]
    assert held == Held(int(whole[-1]), int(run))


def test_a_carried_state_keeps_a_position_for_the_rest_of_its_min_hold():
    flat = [0.5] * 4
    # long for 2 of 4 candles: held 2 more, then the flat signal is followed
    assert positions(flat, flat, **RULE, min_hold=4, held=Held(1, 2)).tolist() == [1, 1, 0, 0]
    assert positions(flat, flat, **RULE, min_hold=4, held=Held(-1, 9)).tolist() == [0, 0, 0, 0]
    assert Held(1, 2).after([1, 1, 0, 0]) == Held(0, 2) and Held(1, 2).after([1]) == Held(1, 3)
    with pytest.raises(BotterError, match="no state of the signal rule"):
        positions(flat, flat, **RULE, held=Held(1, 0))


@settings(max_examples=200, deadline=None)
@given(probs, st.integers(1, 6))
def test_min_hold_runs_are_long_enough_and_follow_the_signal(rows, min_hold):
    p_up, p_down = np.array(rows).T
    raw = positions(p_up, p_down, **RULE)
    held = positions(p_up, p_down, **RULE, min_hold=min_hold)
    change = np.flatnonzero(np.diff(held, prepend=0))
    for i, j in zip(change, np.append(change[1:], len(held))):
        assert held[i] == raw[i]  # a change always goes to what the signal says
        if held[i] != 0 and j < len(held):
            assert j - i >= min_hold
    # it departs from the signal only while a position is locked
    last_change = np.maximum.accumulate(np.where(np.diff(held, prepend=0) != 0, np.arange(len(held)), 0))
    differs = held != raw
    assert (held[differs] != 0).all()
    assert (np.arange(len(held))[differs] - last_change[differs] < min_hold).all()


@pytest.mark.parametrize("kw", [{"threshold_up": 0}, {"threshold_down": 1.5}, {"min_hold": 0},
                                {"min_hold": 1.5}])
def test_bad_arguments_raise(kw):
    with pytest.raises(BotterError):
        positions([0.5], [0.5], **{**RULE, **kw})


def test_nan_and_shape_mismatch_raise():
    with pytest.raises(BotterError, match="NaN"):
        positions([np.nan], [0.5], **RULE)
    with pytest.raises(BotterError, match="equal length"):
        positions([0.5, 0.5], [0.5], **RULE)
