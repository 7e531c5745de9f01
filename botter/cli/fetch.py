"""botter-fetch: candles from an exchange or a CSV file into the store."""

from omegaconf import DictConfig

from botter.cli import app
from botter.errors import BotterError


def main() -> None:
    app("fetch", fetch)


def fetch(cfg: DictConfig) -> None:
    from omegaconf import OmegaConf

    from botter.data import store_path, validate
    from botter.data.csvfile import read_csv_candles, symbol_from_name
    from botter.data.fetch import fetch_to_store, make_exchange
    from botter.data.store import append_store, read_store
    from botter.data.validate import apply_policy

    policy = OmegaConf.to_container(cfg.validate)
    if cfg.source == "csv":
        if not cfg.path:
            raise BotterError("source=csv needs path=<file.csv>")
        candles, timeframe = read_csv_candles(cfg.path, cfg.timeframe)
        symbol = cfg.symbol or symbol_from_name(cfg.path)
        kept, report = apply_policy(candles, timeframe, policy)
        print(f"{cfg.path} as {symbol} {timeframe}: {report}")
        path = store_path(cfg.paths.data_dir, cfg.exchange.id, symbol, timeframe)
        before = len(read_store(path))
        stored = append_store(path, kept)
        print(f"{path}: {len(stored) - before} candles added, {len(candles) - len(kept)} dropped, {len(stored)} stored")
        return
    if cfg.source != "exchange":
        raise BotterError(f"source={cfg.source!r} is not one of: exchange, csv")
    if not cfg.symbol or not cfg.timeframe:
        raise BotterError("give symbol=BASE/QUOTE and timeframe= (like symbol=BTC/USDT timeframe=1h)")
    exchange = make_exchange(
        cfg.exchange.id, OmegaConf.to_container(cfg.exchange.ccxt_config, resolve=True), sandbox=cfg.exchange.sandbox
    )
    path = store_path(cfg.paths.data_dir, cfg.exchange.id, cfg.symbol, cfg.timeframe)
    stored, added, dropped = fetch_to_store(
        exchange, cfg.symbol, cfg.timeframe, path, since=cfg.since, until=cfg.until, policy=policy,
        retry=OmegaConf.to_container(cfg.retry), progress=cfg.progress,
    )
    print(f"{path}: {added} candles added, {dropped} dropped, {len(stored)} stored")
    print(validate(stored, cfg.timeframe))
