"""botter-dashboard: a local web page over a folder of runs and their paper runs (read-only)."""

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from botter.cli import app
from botter.errors import BotterError

MIN_REFRESH_S = 0.2  # an open page polls its ledger this often at most: faster only loads the machine


def main() -> None:
    app("dashboard", dashboard)


def dashboard(cfg: DictConfig) -> None:
    """Serve the dashboard over cfg.runs_dir on cfg.host:cfg.port until Ctrl-C or SIGTERM."""
    if OmegaConf.is_missing(cfg, "runs_dir"):
        raise BotterError("give runs_dir=<a folder of botter-train runs> (searched recursively)")
    c = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    runs_dir = Path(c["runs_dir"]).expanduser()
    if not runs_dir.is_dir():
        raise BotterError(f"runs_dir={c['runs_dir']} is not a folder: give the folder your botter-train runs are in")
    page = c["page"]
    if not page["refresh_s"] >= MIN_REFRESH_S or page["candles"] < 1 or page["fills"] < 0:
        raise BotterError(f"page.refresh_s={page['refresh_s']} must be >= {MIN_REFRESH_S} seconds, page.candles="
                          f"{page['candles']} >= 1 and page.fills={page['fills']} >= 0")
    if not isinstance(c["host"], str) or not c["host"]:
        raise BotterError(f"host={c['host']} must be a host name or address, like host=127.0.0.1")
    port = c["port"]
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise BotterError(f"port={port} must be a whole number from 1 to 65535 (or 0: a free one, printed)")
    from botter.dashboard.app import make_app, serve  # Dash loads only once the command line is right

    serve(make_app(runs_dir, refresh_s=page["refresh_s"], candles=page["candles"], fills=page["fills"]),
          c["host"], c["port"])
