"""botter-dashboard: a local web page over a folder of runs and their paper runs (read-only)."""

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from botter.cli import app
from botter.errors import BotterError


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
    if not page["refresh_s"] > 0 or page["candles"] < 1 or page["fills"] < 0:
        raise BotterError(f"page.refresh_s={page['refresh_s']} must be > 0 seconds, page.candles={page['candles']} "
                          f">= 1 and page.fills={page['fills']} >= 0")
    from botter.dashboard.app import make_app, serve  # Dash loads only once the command line is right

    serve(make_app(runs_dir, refresh_s=page["refresh_s"], candles=page["candles"], fills=page["fills"]),
          c["host"], c["port"])
