"""botter-fetch: candles from an exchange or a CSV file into the store."""

from omegaconf import DictConfig

from botter.cli import app
from botter.errors import BotterError


def main() -> None:
    app("fetch", fetch)


def _stored(path, stored, timeframe: str, *, added: int, replaced: int, kept: int, dropped: int) -> str:
    """What a fetch or import did to the store, then the store's state."""
    from botter.data import validate

    differ = f", {kept} differing candles kept as stored (conflicts=keep)" if kept else ""
    return (f"{path}: {added} candles added, {replaced} replaced, {dropped} dropped{differ}; it holds "
            f"{validate(stored, timeframe)}")


def fetch(cfg: DictConfig) -> None:
    """Fetch cfg.symbol from cfg.exchange.id (source=exchange) or import cfg.path (source=csv) into
    the store under cfg.paths.data_dir; print the report of the candles received and the store's state."""
    from omegaconf import OmegaConf

    from botter.data import store_path
    from botter.data.validate import check_policy

    policy = check_policy(OmegaConf.to_container(cfg.validate))
    if cfg.source == "csv":
        from botter.data.csvfile import read_csv_candles, symbol_from_name
        from botter.data.store import append_store
        from botter.data.validate import apply_policy

        if not cfg.path:
            raise BotterError("source=csv needs path=<file.csv>")
        candles, timeframe = read_csv_candles(cfg.path, cfg.timeframe)
        symbol = cfg.symbol or symbol_from_name(cfg.path)
        path = store_path(cfg.paths.data_dir, cfg.exchange.id, symbol, timeframe)
        kept, report = apply_policy(candles, timeframe, policy)
        print(f"received from {cfg.path} as {cfg.exchange.id} {symbol}: {report}")
        written = append_store(path, kept, conflicts=cfg.conflicts)
        print(_stored(path, written.stored, timeframe, added=written.added, replaced=written.replaced,
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
    print(f"received from {cfg.exchange.id} {cfg.symbol}: {got.report}")
    for note in got.notes:
        print(note)
    print(_stored(path, got.stored, cfg.timeframe, added=got.added, replaced=got.replaced, kept=got.kept,
                  dropped=len(got.report.dropped)))
