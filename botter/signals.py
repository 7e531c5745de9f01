"""Class probabilities -> target positions: the one rule used by the backtest AND the paper loop.

A target decided at the close of candle t is filled at the open of t+1 (see botter.backtest).
`positions` is causal: its value at t depends on the probabilities up to t only. The rule's whole
memory is a `Held` (the position it gave last and for how many candles in a row), so the backtest
calls it once on a whole period and the paper loop calls it on each new candle with the `Held` of
the candles before: any split of the probabilities into chunks, the state carried from one to the
next, gives what one call on the whole gives (tested). A paper decision therefore costs the same at
candle 100,000 as at candle 100.
"""

from dataclasses import dataclass

import numpy as np

from botter.errors import BotterError


@dataclass(frozen=True)
class Held:
    """The signal rule's state after a candle: the `position` (-1, 0, 1) it gave and for how many
    `candles` in a row it has given it (0 only before the first candle)."""

    position: int = 0
    candles: int = 0

    def after(self, targets) -> "Held":
        """The state after `targets`, the positions `positions(..., held=self)` gave for the candles
        that followed this state."""
        targets = np.asarray(targets)
        if len(targets) == 0:
            return self
        last = int(targets[-1])
        other = np.flatnonzero(targets != last)
        run = len(targets) - (other[-1] + 1 if len(other) else 0)
        if run == len(targets) and last == self.position:
            run += self.candles
        return Held(last, int(run))


def positions(
    p_up,
    p_down,
    *,
    threshold_up: float,
    threshold_down: float,
    long_only: bool = False,
    min_hold: int = 1,
    held: Held = Held(),
) -> np.ndarray:
    """Target position per candle, int8 in {-1, 0, 1} (short, flat, long).

    p_up, p_down: P(up) and P(down) per candle, 1-D, in [0, 1], decided at the close of each candle.
    Long when p_up >= threshold_up, short when p_down >= threshold_down (never with long_only),
    flat otherwise; when both fire the larger probability wins and a tie is flat.
    min_hold: a long or short position, once entered, is held for at least this many candles
    (1 = follow the signal every candle); flat can be left at once.
    held: the state after the candles before these (default: none before, flat); carry it on with
    `held.after(result)`.

    >>> positions([0.7, 0.2, 0.5], [0.3, 0.8, 0.5], threshold_up=0.6, threshold_down=0.6)
    array([ 1, -1,  0], dtype=int8)
    """
    p_up = np.asarray(p_up, dtype=np.float64)
    p_down = np.asarray(p_down, dtype=np.float64)
    if p_up.ndim != 1 or p_up.shape != p_down.shape:
        raise BotterError(f"p_up and p_down must be 1-D of equal length, got shapes {p_up.shape} and "
                          f"{p_down.shape}: pass one probability per candle")
    if np.isnan(p_up).any() or np.isnan(p_down).any():
        raise BotterError("p_up/p_down contain NaN: drop the candles without a prediction first")
    for name, value in (("threshold_up", threshold_up), ("threshold_down", threshold_down)):
        if not 0 < value <= 1:
            raise BotterError(f"{name}={value} must be in (0, 1]: it is a probability threshold")
    if int(min_hold) != min_hold or min_hold < 1:
        raise BotterError(f"min_hold={min_hold} must be a whole number of candles >= 1")
    if held.position not in (-1, 0, 1) or held.candles < (held.position != 0):
        raise BotterError(f"{held} is no state of the signal rule: a position of -1, 0 or 1, held for at least "
                          "one candle unless flat")

    up = p_up >= threshold_up
    down = (p_down >= threshold_down) & (not long_only)
    want = np.zeros(len(p_up), dtype=np.int8)
    want[up & (~down | (p_up > p_down))] = 1
    want[down & (~up | (p_down > p_up))] = -1
    if min_hold == 1:
        return want
    return _hold(want, int(min_hold), held)


def _hold(want: np.ndarray, min_hold: int, held: Held) -> np.ndarray:
    """Follow `want`, but keep each long/short for at least `min_hold` candles once entered, starting
    from the state `held`.

    Loops once per position change (per trade), not per candle: after a change to v at i, the next
    change is the first j >= i + hold with want[j] != v, read from a precomputed "next index that
    differs from v" table.
    """
    n = len(want)
    idx = np.arange(n + 1)
    # next_differing[v][k]: the first j >= k with want[j] != v, or n (plain lists: the loop is scalar).
    next_differing = {}
    for v in (-1, 0, 1):
        mark = np.where(np.append(want != v, True), idx, n)
        next_differing[v] = np.minimum.accumulate(mark[::-1])[::-1].tolist()
    wanted = want.tolist()
    values, starts = [held.position], [0]
    locked = max(min_hold - held.candles, 0) if held.position else 0  # candles the held position still has
    i = next_differing[held.position][min(locked, n)]
    while i < n:
        v = wanted[i]
        values.append(v)
        starts.append(i)
        i = next_differing[v][min(i + (min_hold if v else 1), n)]
    return np.repeat(np.array(values, dtype=np.int8), np.diff(np.append(starts, n)))
