"""botter-fetch: candles from an exchange or a CSV file into the store."""

import os
import sys

from omegaconf import DictConfig

from botter.cli import app
from botter.errors import BotterError


def main() -> None:
    app("fetch", fetch)


def _say(text: str) -> None:
    """Print a result line. A reader that went away (`botter-fetch ... | head -1`) stops neither the
    fetch nor the import: the rest goes nowhere."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        # Python flushes stdout again at exit, and would complain: send it to /dev/null instead.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _stored(path, stored, timeframe: str, *, added: int, replaced: int, kept: int, dropped: int) -> str:
    """What a fetch or import did to the store, then the store's state (closures by the market hours
    its candles show apart from gaps)."""
    from botter.data import validate
    from botter.data.validate import learn_hours

    differ = f", {kept} differing candles kept as stored (conflicts=keep)" if kept else ""
    return (f"{path}: {added} candles added, {replaced} replaced, {dropped} dropped{differ}; it holds "
            f"{validate(stored, timeframe, learn_hours(stored.index, timeframe))}")


def fetch(cfg: DictConfig) -> None:
    """Fetch cfg.symbol from cfg.exchange.id (source=exchange) or import cfg.path (source=csv) into
    the store under cfg.paths.data_dir; print the report of the candles received and the store's state.
    Ctrl-C ends it with one line (BotterError) saying what was stored."""
    try:
        _fetch(cfg)
    except KeyboardInterrupt:
        raise BotterError("interrupted (Ctrl-C): the store file is whole, as before or with what was written "
                          "(each write is all or nothing); run the same command again to finish") from None


def _fetch(cfg: DictConfig) -> None:
    from omegaconf import OmegaConf

    from botter.data import store_path
    from botter.data.validate import check_policy

    policy = check_policy(OmegaConf.to_container(cfg.validate))
    if cfg.source == "csv":
        import time

        from botter.data.csvfile import read_csv_candles, symbol_from_name
        from botter.data.store import append_store, read_store
        from botter.data.validate import apply_policy, learn_hours, refuse_all_dropped

        if not cfg.path:
            raise BotterError("source=csv needs path=<file.csv>")
        symbol = cfg.symbol or symbol_from_name(cfg.path)
        candles, timeframe = read_csv_candles(cfg.path, cfg.timeframe, symbol=symbol, dayfirst=cfg.dayfirst,
                                              decimal=cfg.decimal, local_dates=cfg.local_dates)
        path = store_path(cfg.paths.data_dir, cfg.exchange.id, symbol, timeframe)
        # The market's hours, from what is stored and what came: its closures are no gaps.
        market = learn_hours(read_store(path).index.append(candles.index), timeframe)
        kept, report = apply_policy(candles, timeframe, policy, now=int(time.time() * 1000), hours=market)
        _say(f"received from {cfg.path} as {cfg.exchange.id} {symbol}: {report}")
        refuse_all_dropped(report)
        written = append_store(path, kept, conflicts=cfg.conflicts)
        _say(_stored(path, written.stored, timeframe, added=written.added, replaced=written.replaced,
                     kept=written.kept, dropped=len(report.dropped)))
        return
    if cfg.source != "exchange":
        raise BotterError(f"source={cfg.source!r} is not one of: exchange, csv")
    from botter.data.fetch import fetch_to_store, make_exchange

    if not cfg.symbol or not cfg.timeframe:
        raise BotterError("give symbol=BASE/QUOTE and timeframe= (like symbol=BTC/USDT timeframe=1h)")
    path = store_path(cfg.paths.data_dir, cfg.exchange.id, cfg.symbol, cfg.timeframe)
    exchange = make_exchange(
        cfg.exchange.id, OmegaConf.to_container(cfg.exchange.ccxt_config, resolve=True), sandbox=cfg.exchange.sandbox
    )
    got = fetch_to_store(
        exchange, cfg.symbol, cfg.timeframe, path, since=cfg.since, until=cfg.until, policy=policy,
        retry=OmegaConf.to_container(cfg.retry), conflicts=cfg.conflicts, refetch=cfg.refetch, progress=cfg.progress,
    )
    _say(f"received from {cfg.exchange.id} {cfg.symbol}: {got.report}")
    for note in got.notes:
        _say(note)
    _say(_stored(path, got.stored, cfg.timeframe, added=got.added, replaced=got.replaced, kept=got.kept,
                 dropped=len(got.report.dropped)))
