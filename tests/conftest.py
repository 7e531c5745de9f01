import pytest


@pytest.fixture(scope="session")
def eth():
    """The shipped ETH/BTC 5m sample: 5760 candles from 2018-01-10 04:55 UTC."""
    from botter.data import load_sample

    return load_sample("ETH/BTC")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A botter-train run folder made in seconds: 5 days of ETH/BTC, a tiny CNN, one epoch.

    Its test split (about 200 decisions) is what the paper-trading tests replay.
    """
    from botter.cli.train import train as _train
    from botter.config import compose

    root = tmp_path_factory.mktemp("tiny_run")
    cfg = compose("train", [
        "data.symbols=[ETH/BTC]", "data.end=2018-01-15", f"paths.data_dir={root / 'data'}", "dataset.cache=false",
        "model.layers=[{type:Conv2d,out_channels:4,kernel_size:5,stride:2},{type:ReLU},{type:MaxPool2d,kernel_size:4}]",
        "trainer.max_epochs=1", "trainer.progress=false", "trainer.device=cpu",
    ])
    _train(cfg, out_dir=root / "run")
    return root / "run"
