"""Vectorised backtest: target positions -> next-open fills, fees, equity, trades and statistics.

The rules (the paper broker follows the same ones by importing `fill`; they are backtesting.py's
with exclusive orders, tested against it in tests/test_stats.py):

- A target decided at the close of candle t is filled at the OPEN of candle t+1. The last candle's
  target is never filled; a position still open at the end is closed at the last CLOSE, so that the
  final equity is cash.
- `fill(side, price, quantity, fee=, slippage_bps=)` is the whole fill rule: a buy (side +1) pays
  `price * (1 + slippage_bps / 10_000)`, a sell (side -1) gets `price * (1 - slippage_bps / 10_000)`
  (slippage always against the trader), and the fee is `fee * |quantity| * fill price`, in quote
  currency, charged on every side (entry and exit).
- A position is sized at entry so that it and its entry fee take a fraction `size` of the equity at
  that moment (which, since a position is closed before the next one opens, is the cash): quantity =
  size * side * cash / (fill price * (1 + fee)), backtesting.py's sizing without its rounding down to
  whole units; at size 1 a long leaves no cash, never less. The quantity is then held unchanged until
  the target changes; any change of target closes the position and, if the new target is not flat,
  opens a new one at the same open.
- Equity is marked at each candle's close: cash + quantity * close.
- Ruin: at the first candle whose marked equity is <= 0 (a short can lose more than everything, a
  gap can close a trade below zero) the position is closed at that candle's close and the account
  stops: equity is 0 from that candle on and nothing more trades (backtesting.py's rule; the loss
  beyond the equity stays in that trade's PnL). A close-out at the end that leaves <= 0 shows 0 too.
- A trade's ExitTime is the open time of the candle it was closed in (ExitBar): at its open on a
  change of target, at its close at the end or on ruin; ExitReason says which ("target", "end",
  "ruin").

`backtest` computes this without a loop over candles: the equity at each trade's entry is the
cumulative product of the per-trade growth factors, and every candle inside a trade is a linear
function of its close. tests/test_backtest.py keeps a plain per-candle loop of the same rules as the
executable spec and checks the two agree on random inputs.

A multi-symbol run (`backtest_predictions`) backtests each symbol on an equal share of the cash and
adds the equity curves into one portfolio: no rebalancing between symbols, kept simple on purpose.
"""

import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from botter.errors import BotterError
from botter.signals import positions
from botter.stats import compute_stats

TRADE_COLUMNS = ["EntryTime", "ExitTime", "Duration", "Side", "Size", "EntryPrice", "ExitPrice",
                 "Fees", "PnL", "Return [%]", "EntryBar", "ExitBar", "ExitReason"]
EXIT_REASONS = np.array(["target", "end", "ruin"])  # ExitReason by code 0, 1, 2


@dataclass
class Result:
    """What a backtest returns.

    equity: equity per candle (quote currency), marked at the close, indexed by candle open time.
    buy_hold: the same cash held in the asset(s) from the first close, for comparison.
    trades: one row per trade, columns TRADE_COLUMNS (Size: signed quantity in base units; prices
        are fill prices; Fees and PnL in quote currency, PnL after fees; Return [%] is PnL over the
        entry notional; EntryBar/ExitBar are the candle positions of the entry and of the candle
        the trade was closed in, EntryTime/ExitTime their open times; ExitReason: "target" (closed
        at an open by a change of target), "end" (at the last close), "ruin" (see the rules)).
    stats: pandas Series with labelled keys and units (see botter.stats.compute_stats).
    """

    equity: pd.Series
    buy_hold: pd.Series
    trades: pd.DataFrame
    stats: pd.Series


def fill(side, price, quantity, *, fee: float, slippage_bps: float):
    """The fill rule shared by the backtest and the paper broker: (fill price, fee amount).

    side: +1 buy, -1 sell; price: the reference price (the open of the fill candle); quantity: base
    units (its sign is ignored); fee: fraction of the notional per side (0.001 = 0.1 %); slippage_bps:
    basis points against the trader. Works on scalars and numpy arrays alike.

    >>> fill(1, 100.0, 2.0, fee=0.001, slippage_bps=10)
    (100.1, 0.2002)
    """
    price = price * (1 + side * slippage_bps * 1e-4)
    return price, fee * np.abs(quantity) * price


def backtest(candles: pd.DataFrame, target, *, fee: float, slippage_bps: float, size: float,
             cash: float = 1.0) -> Result:
    """Backtest target positions on candles with next-open fills (rules in the module docstring).

    candles: a candles frame (UTC open-time index; `open` and `close` are used).
    target: one value in {-1, 0, 1} per candle, decided at that candle's close (botter.signals).
    fee: taker fee per side as a fraction; slippage_bps: basis points; size: fraction of equity a
    position and its entry fee take, in (0, 1]; cash: starting equity in quote currency.
    """
    check_costs(fee, slippage_bps, size, cash)
    if not isinstance(candles.index, pd.DatetimeIndex) or len(candles) < 2:
        raise BotterError("candles must have a DatetimeIndex of open times and at least 2 rows")
    target = np.asarray(target)
    if target.shape != (len(candles),):
        raise BotterError(f"target has shape {target.shape}, candles have {len(candles)} rows: "
                          "pass one target position per candle")
    held = np.zeros(len(target), dtype=np.int8)  # (n,) position during candle i: target of i-1
    held[1:] = target[:-1]
    if not (held[1:] == target[:-1]).all() or np.abs(held).max() > 1:
        raise BotterError("target positions must be -1, 0 or 1 (use `size` for the fraction of equity)")
    o = candles["open"].to_numpy(np.float64)
    c = candles["close"].to_numpy(np.float64)
    equity_values, t = _simulate(o, c, held, fee=fee, slippage_bps=slippage_bps, size=size, cash=cash)

    index = candles.index
    entry, exit_ = index[t["entry_bar"]], index[t["exit_bar"]]
    trades = pd.DataFrame({
        "EntryTime": entry,
        "ExitTime": exit_,
        "Duration": exit_ - entry,
        "Side": held[t["entry_bar"]],
        "Size": t["size"],
        "EntryPrice": t["entry_price"],
        "ExitPrice": t["exit_price"],
        "Fees": t["fees"],
        "PnL": t["pnl"],
        "Return [%]": t["pnl"] / (np.abs(t["size"]) * t["entry_price"]) * 100,
        "EntryBar": t["entry_bar"],
        "ExitBar": t["exit_bar"],
        "ExitReason": EXIT_REASONS[t["reason"]],
    })
    equity = pd.Series(equity_values, index=index, name="Equity")
    buy_hold = pd.Series(cash * c / c[0], index=index, name="Buy & Hold")
    return Result(equity, buy_hold, trades, compute_stats(equity, trades, buy_hold))


def _simulate(o, c, held, *, fee, slippage_bps, size, cash) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Equity per candle and per-trade arrays, from the position held during each candle (held[0] = 0),
    ruin included: `_curve` without the rule, then once more on the candles up to the ruin."""
    n = len(c)
    costs = {"fee": fee, "slippage_bps": slippage_bps, "size": size, "cash": cash}
    with np.errstate(all="ignore"):  # past a ruinous trade the trades are sized on <= 0: discarded below
        marked, after, t = _curve(o, c, held, **costs)
    # The curve is exact up to the exit of the first trade that leaves equity <= 0 (nothing may open
    # there); the ruin candle is the first marked <= 0 before it, else that exit, else none (n).
    broke = np.flatnonzero(after[1:] <= 0)
    bound = t["ends"][broke[0]] if len(broke) else n
    below = np.flatnonzero(marked[:bound] <= 0)
    ruin = below[0] if len(below) else bound
    if ruin == n:
        marked[-1] = max(after[-1], 0.0)  # the close-out at the end
        t["reason"] = t.pop("at_end").astype(np.int8)
        return marked, t
    held = held[:ruin + 1].copy()
    if ruin == bound:
        held[ruin] = 0  # closed at this open with nothing left: no position opens
    marked, _, t = _curve(o[:ruin + 1], c[:ruin + 1], held, **costs)  # closes what is held at the ruin close
    equity = np.zeros(n)
    equity[:ruin] = marked[:ruin]
    t["reason"] = t.pop("at_end") * np.int8(2)
    return equity, t


def _curve(o, c, held, *, fee, slippage_bps, size, cash) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """The rules without ruin: equity marked at each close (the last one before the close-out at the
    end), equity after each trade (T+1,), and per-trade arrays.

    The candles split into segments of constant position; in each, equity = A + B * close, with
    A and B fixed by the trade (B = its quantity) or, when flat, by the equity after the trades
    before it (B = 0). So the curve is two np.repeat calls once the per-trade figures are known.
    """
    n = len(c)
    seg = np.concatenate([[0], np.flatnonzero(held[1:] != held[:-1]) + 1])  # (S,) segment starts
    lens = np.diff(np.append(seg, n))
    is_trade = held[seg] != 0
    starts = seg[is_trade]  # (T,) entry candle of each trade
    ends = (seg + lens)[is_trade]  # (T,) exit candle (its open), n = closed at the last close
    side = held[starts].astype(np.float64)
    at_end = ends == n
    exit_ref = np.where(at_end, c[-1], o[np.minimum(ends, n - 1)])
    entry_price, _ = fill(side, o[starts], 0.0, fee=fee, slippage_bps=slippage_bps)
    exit_price, _ = fill(-side, exit_ref, 0.0, fee=fee, slippage_bps=slippage_bps)
    # Per unit of equity at entry: quantity, both fees, and the growth factor of the trade.
    q1 = size * side / (entry_price * (1 + fee))
    fee_in1 = fill(side, o[starts], q1, fee=fee, slippage_bps=slippage_bps)[1]
    fee_out1 = fill(-side, exit_ref, q1, fee=fee, slippage_bps=slippage_bps)[1]
    growth = 1 + q1 * (exit_price - entry_price) - fee_in1 - fee_out1
    after = cash * np.concatenate([[1.0], np.cumprod(growth)])  # (T+1,) equity after k trades
    start_equity = after[:-1]
    qty = q1 * start_equity

    a = after[np.cumsum(is_trade) - is_trade]  # (S,) flat segments: equity after the trades before
    a[is_trade] = start_equity * (1 - fee_in1) - qty * entry_price
    b = np.zeros(len(seg))
    b[is_trade] = qty
    equity = np.repeat(b, lens)  # (n,) in place from here: this is the hot part
    equity *= c
    equity += np.repeat(a, lens)
    trades = {
        "entry_bar": starts, "exit_bar": np.minimum(ends, n - 1), "ends": ends, "at_end": at_end,
        "size": qty, "entry_price": entry_price, "exit_price": exit_price,
        "fees": (fee_in1 + fee_out1) * start_equity, "pnl": after[1:] - start_equity,
    }
    return equity, after, trades


def backtest_predictions(predictions: pd.DataFrame, candles: dict[str, pd.DataFrame], *,
                         threshold_up: float, threshold_down: float, long_only: bool, min_hold: int,
                         fee: float, slippage_bps: float, size: float, cash: float) -> dict[str, Result]:
    """Backtest a run's predictions: {symbol: Result, ..., "portfolio": Result}.

    predictions: rows (time, symbol, p_down, p_up[, p_flat]) with time the open time of the
    decision candle t. candles: {symbol: candles frame} covering those times. Each symbol trades
    from its first to its last prediction (plus the candle that fills the last decision) with
    cash / number of symbols; a candle without a prediction is flat. "portfolio" adds them up.
    """
    missing = {"time", "symbol", "p_up", "p_down"} - set(predictions.columns)
    if missing:
        raise BotterError(f"predictions lack columns {sorted(missing)}: expected time, symbol, p_down, "
                          "p_up (a run's predictions.parquet)")
    symbols = list(dict.fromkeys(predictions["symbol"]))
    if not symbols:
        raise BotterError("no predictions to backtest: is the period empty?")
    results = {}
    for symbol in symbols:
        if symbol not in candles:
            raise BotterError(f"no candles for {symbol}: load the data the predictions were made on")
        p = predictions[predictions["symbol"] == symbol].sort_values("time")
        times = pd.DatetimeIndex(p["time"])
        df = candles[symbol]
        unknown = times.difference(df.index)
        if len(unknown):
            raise BotterError(f"{len(unknown)} prediction times of {symbol} are not candle open times "
                              f"(first {unknown[0]}): are these the candles the run was made on?")
        first, last = df.index.get_indexer([times[0], times[-1]])
        df = df.iloc[first:last + 2]  # the candle after the last decision fills it
        target = positions(p["p_up"].to_numpy(), p["p_down"].to_numpy(), threshold_up=threshold_up,
                           threshold_down=threshold_down, long_only=long_only, min_hold=min_hold)
        target = pd.Series(target, index=times).reindex(df.index, fill_value=0)
        if len(df) < 2:
            raise BotterError(f"{symbol}: a single candle cannot be backtested; widen the period")
        results[symbol] = backtest(df, target.to_numpy(), fee=fee, slippage_bps=slippage_bps,
                                   size=size, cash=cash / len(symbols))
    results["portfolio"] = portfolio(results)
    return results


def portfolio(results: dict[str, Result]) -> Result:
    """Add per-symbol results (each with its own share of the cash) into one portfolio Result.

    Before its first candle and after its last, a symbol counts with its starting and final equity.
    The statistics are those of the summed equity curve and of all trades (a Symbol column added);
    a portfolio candle counts as exposed while some symbol's trade is open (entry to exit candle).
    """
    equity = add_up([r.equity for r in results.values()]).rename("Equity")
    buy_hold = add_up([r.buy_hold for r in results.values()]).rename("Buy & Hold")
    trades = pd.concat([r.trades.assign(Symbol=s) for s, r in results.items()], ignore_index=True)
    trades = trades.sort_values(["EntryTime", "Symbol"], kind="stable", ignore_index=True)
    return Result(equity, buy_hold, trades, compute_stats(equity, trades, buy_hold))


def add_up(curves: list[pd.Series]) -> pd.Series:
    """The sum of separate accounts' curves on the union of their times: before its first time a curve
    counts with its first value, after its last with its last (the portfolio's rule; the paper
    account's too)."""
    # Index.union, not a Python set of Timestamps (1 s per 100,000 candles); the same index, sorted.
    index = pd.DatetimeIndex(functools.reduce(pd.Index.union, (c.index for c in curves)), freq=None).rename(None)
    return sum(c.reindex(index).ffill().fillna(c.iloc[0]) for c in curves)


def stats_table(results: dict[str, Result], *, sample: str | None = None) -> pd.DataFrame:
    """The statistics side by side, one column per symbol (and "portfolio"): print it with to_string().
    sample: "IN-SAMPLE" or "out-of-sample", shown as the first row."""
    table = pd.DataFrame({name: r.stats for name, r in results.items()})
    if sample is None:
        return table
    return pd.concat([pd.DataFrame({name: [sample] for name in results}, index=["Sample"]), table])


def check_costs(fee, slippage_bps, size, cash=None) -> None:
    """Raise BotterError for costs or sizing outside their ranges (the backtest and the paper broker
    share it). cash: a starting cash, checked when given (a running account's cash is not a setting)."""
    if not 0 <= fee < 1:
        raise BotterError(f"fee={fee} must be a fraction per side in [0, 1) (0.001 = 0.1 %)")
    if not 0 <= slippage_bps < 10_000:
        raise BotterError(f"slippage_bps={slippage_bps} must be in [0, 10000) (basis points against the trader: "
                          "10000 would make a fill price zero)")
    if not 0 < size <= 1:
        raise BotterError(f"size={size} must be a fraction of equity in (0, 1]")
    if cash is not None and not cash > 0:
        raise BotterError(f"cash={cash} must be > 0")
