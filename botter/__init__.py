"""botter: candlestick-chart CNNs for crypto, from candles to an honest backtest and paper trading."""

from botter.errors import BotterError

__all__ = ["BotterError"]
__version__ = "0.1.0"
