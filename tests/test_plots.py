"""The charts' structure: a legend for every marker, x-limits that are the data's, a zoom past
MAX_MARKED trades, thinned lines for long series (how fast they draw is not asserted)."""

import matplotlib.dates as mdates
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.collections import LineCollection, PathCollection

import botter.plots
from botter.backtest import backtest
from botter.data import load_sample
from botter.paper.ledger import Fill, Ledger, Step
from botter.paper.report import plot_equity as plot_paper_equity
from botter.plots import MARKERS, MAX_CANDLES, MAX_MARKED, PIXELS, ZOOM, plot_equity, plot_trades, thin

BAR = 5 / (24 * 60)  # the samples' 5-minute candles, in matplotlib's days


@pytest.fixture
def figures(monkeypatch):
    """The figures the charts save (after drawing), to look into."""
    saved = []
    real = botter.plots.save

    def save(fig, path, **kwargs):
        real(fig, path, **kwargs)
        saved.append(fig)

    monkeypatch.setattr(botter.plots, "save", save)
    return saved


def traded(candles: pd.DataFrame, hold: int):
    """A backtest of candles that holds long `hold` candles, flat `hold`, short `hold`, flat `hold`, ...:
    one trade per 2 * hold candles."""
    target = np.resize(np.repeat([1, 0, -1, 0], hold), len(candles))
    return backtest(candles, target, fee=0.001, slippage_bps=1, size=1.0)


def days(times) -> np.ndarray:
    return mdates.date2num(pd.DatetimeIndex(times).tz_convert(None).to_pydatetime())


def markers(ax) -> list[int]:
    """Points of the long-entry, short-entry and exit markers, in that order."""
    return [len(c.get_offsets()) for c in ax.collections if isinstance(c, PathCollection)]


def test_few_trades_are_all_marked_with_a_legend(tmp_path, figures):
    df = load_sample("ETH/BTC").iloc[:300]
    r = traded(df, 10)
    plot_trades(df, r.trades, tmp_path / "t.png", title="ETH/BTC")
    (fig,) = figures
    price, pnl, dist = fig.axes
    assert [t.get_text() for t in price.get_legend().get_texts()] == [m["label"] for m in MARKERS.values()]
    side = r.trades["Side"]
    assert markers(price) == [(side == 1).sum(), (side == -1).sum(), len(r.trades)] and len(r.trades) == 15
    (candles,) = [c for c in price.collections if isinstance(c, LineCollection)]
    assert len(candles.get_segments()) == len(df)  # every candle, as a candlestick
    first, last = days(df.index[[0, -1]])
    lo, hi = price.get_xlim()
    assert first - 1.01 * BAR < lo < first and last < hi < last + 1.01 * BAR  # no empty margin
    assert f"{len(r.trades)} trades" in pnl.get_title(loc="left")
    assert sum(p.get_height() for p in dist.patches) == len(r.trades)
    assert (tmp_path / "t.png").stat().st_size > 20_000


@pytest.mark.parametrize("trades", [0, 1])
def test_no_trade_or_one_trade(tmp_path, figures, trades):
    df = load_sample("DASH/BTC").iloc[:50]
    r = traded(df, 40)
    plot_trades(df, r.trades.iloc[:trades], tmp_path / "t.png")
    price, pnl, dist = figures[0].axes
    assert markers(price) == [trades, 0, trades]
    assert pnl.get_title(loc="left").startswith("1 trade, ") if trades else not dist.axison


@pytest.mark.parametrize("zoom", [ZOOM, 40])
def test_many_trades_show_the_last_candles_and_a_summary_of_all(tmp_path, figures, zoom):
    df = load_sample("ETH/BTC")
    r = traded(df, 2)  # 1440 trades
    assert len(r.trades) > MAX_MARKED
    plot_trades(df, r.trades, tmp_path / "t.png", zoom=zoom)
    price, pnl, dist = figures[0].axes
    (candles,) = [c for c in price.collections if isinstance(c, LineCollection)]
    assert len(candles.get_segments()) == zoom
    lo, hi = price.get_xlim()
    first, last = days(df.index[[-zoom, -1]])
    assert first - 1.01 * BAR < lo < first and last < hi < last + 1.01 * BAR
    assert sum(markers(price)) <= 2 * zoom  # an entry and an exit per candle at most: no wall of markers
    assert [t.get_text() for t in price.get_legend().get_texts()] == [m["label"] for m in MARKERS.values()]
    # the summary covers the whole period and every trade
    assert pnl.get_xlim()[0] == pytest.approx(days(df.index[:1])[0])
    assert pnl.get_title(loc="left").startswith(f"{len(r.trades)} trades, ")
    assert sum(p.get_height() for p in dist.patches) == len(r.trades)


def test_a_long_period_with_few_trades_draws_its_price_band(tmp_path, figures):
    df = load_sample("LTC/BTC")
    r = traded(df, 100)
    assert len(r.trades) <= MAX_MARKED and len(df) > MAX_CANDLES
    plot_trades(df, r.trades, tmp_path / "t.png")
    price = figures[0].axes[0]
    assert np.allclose(price.get_xlim(), days(df.index[[0, -1]]))
    assert markers(price)[2] == len(r.trades)
    assert all(len(line.get_xdata()) <= 4 * PIXELS for line in price.get_lines())


def test_equity_chart_spans_the_curve_and_thins_a_long_one(tmp_path, figures):
    n = 200_000
    rng = np.random.default_rng(0)
    close = np.exp(np.cumsum(rng.normal(0, 0.001, n)))
    df = pd.DataFrame({"open": np.r_[close[0], close[:-1]], "close": close},
                      index=pd.date_range("2024-01-01", periods=n, freq="1min", tz="UTC"))
    r = backtest(df, np.resize(np.repeat([1, -1, 0], 7), n), fee=0.0, slippage_bps=0, size=1.0)
    plot_equity(r, tmp_path / "e.png")
    top, bottom = figures[0].axes
    assert np.allclose(bottom.get_xlim(), days(df.index[[0, -1]]))
    strategy = top.get_lines()[0].get_ydata()
    assert len(strategy) <= 2 * PIXELS + 1
    assert strategy.min() == r.equity.min() and strategy.max() == r.equity.max() and strategy[-1] == r.equity.iloc[-1]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=400), st.integers(1, 20))
def test_thin_keeps_every_extreme_at_its_time(values, bins):
    s = pd.Series(values, index=pd.date_range("2024-01-01", periods=len(values), freq="1min"))
    t = thin(s, bins)
    if len(s) <= 4 * bins:
        pd.testing.assert_series_equal(t, s)
        return
    assert len(t) == 2 * bins + 1 and t.iloc[-1] == s.iloc[-1]
    for start, stop in zip(t.index[:-1:2], list(t.index[2:-1:2]) + [s.index[-1] + pd.Timedelta(1, "min")]):
        run = s[(s.index >= start) & (s.index < stop)]
        assert sorted(t[start]) == [run.min(), run.max()]


def paper_chart(path, candles: int, every: int) -> dict:
    """Draw the paper equity chart of a ledger of `candles` XMR/BTC candles with a buy or a sell every
    `every` candles, at the open; returns the fills per side."""
    df = load_sample("XMR/BTC").iloc[:candles]
    times = (df.index.as_unit("ms").asi8 // 1).tolist()
    with Ledger(path.parent / "ledger.sqlite", {"symbols": ["XMR/BTC"], "timeframe": "5m", "feed": "replay",
                                                "cash": 1.0}) as ledger:
        side, fills = 0, {"buy": 0, "sell": 0}
        for i, (t, row) in enumerate(zip(times, df.itertuples(index=False))):
            fill = None
            if i and i % every == 0:
                order = "buy" if side <= 0 else "sell"
                side = 1 if order == "buy" else -1
                fill = Fill(t, times[i - 1], order, 1.0, row.open, 0.0)
                fills[order] += 1
            ledger.record([Step("XMR/BTC", (t, *row), fill, float(side), side, 1.0, 1.0 + 0.01 * np.sin(i / 9),
                                {"p_down": 0.5, "p_up": 0.5}, side)])
        plot_paper_equity(ledger, path)
    return fills


def test_paper_equity_chart_shows_every_fill_in_its_lane(tmp_path, figures):
    df = load_sample("XMR/BTC").iloc[:240]
    fills = paper_chart(tmp_path / "equity.png", 240, 12)  # a buy or a sell every hour
    ax, lane, drawdown = figures[0].axes
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert f"{fills['buy']} buy fills (the lane below)" in labels and f"{fills['sell']} sell fills (the lane below)" in labels
    buys, sells = (c for c in lane.collections if isinstance(c, PathCollection))
    assert (len(buys.get_offsets()), len(sells.get_offsets())) == (fills["buy"], fills["sell"]) == (10, 9)
    assert min(buys.get_sizes()) >= 50  # big enough to see (the old marks shrank to 2 pt² with many fills)
    assert np.allclose(drawdown.get_xlim(), days(df.index[[0, -1]]))


def test_paper_equity_chart_counts_many_fills_per_slice_of_time(tmp_path, figures):
    fills = paper_chart(tmp_path / "equity.png", 2400, 3)  # 799 fills: markers would make a solid band
    ax, lane, _ = figures[0].axes
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(label.startswith(f"{fills['buy']} buy fills (the lane below, per ") for label in labels)
    heights = np.array([bar.get_height() for bar in lane.patches])
    assert heights[heights > 0].sum() == fills["buy"] and -heights[heights < 0].sum() == fills["sell"]
    assert not [c for c in lane.collections if isinstance(c, PathCollection)]
