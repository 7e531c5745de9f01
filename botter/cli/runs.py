"""botter-runs: run folders side by side (train, sweep and walk-forward runs), and the Hydra callback
that ends every -m sweep with that table."""

import sys

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from botter.cli import app
from botter.errors import BotterError


def main() -> None:
    app("runs", runs)


def runs(cfg: DictConfig) -> str:
    """Print the table of the complete runs under cfg.path, sorted by cfg.sort; write runs.csv and
    runs.png (into cfg.out_dir, default cfg.path). Returns the printed text."""
    from botter.compare import report

    _, text = report(cfg.path, by=cfg.sort, ascending=cfg.ascending, out_dir=cfg.out_dir)
    print(text)
    return text


class CompareRuns(Callback):
    """A Hydra callback (hydra.callbacks in configs/train.yaml and walkforward.yaml): after a -m sweep,
    print the table of its runs, sorted by `sort`, and write runs.csv and runs.png into the sweep folder."""

    def __init__(self, sort: str = "accuracy"):
        self.sort = sort

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        from botter.compare import report

        try:
            print(report(config.hydra.sweep.dir, by=self.sort)[1])
        except BotterError as e:
            print(f"error: {e}", file=sys.stderr)
