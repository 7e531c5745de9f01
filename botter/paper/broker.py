"""The simulated broker: fills target positions at the next candle's open by the backtest's rules.

It never talks to an exchange. The fill price, fee and sizing are those of botter.backtest (its
`fill` is imported, not copied): any change of target closes the position held and, when the new
target is not flat, opens one of `size` x equity at the same open; the quantity is then held until
the target changes.
"""

from botter.backtest import check_costs, fill
from botter.paper.ledger import Fill


class Broker:
    """A paper account in one symbol: cash (quote units) and a position (base units).

    fee: fraction of the notional per side; slippage_bps: basis points against the trader;
    size: fraction of equity put in each position, in (0, 1].
    """

    def __init__(self, *, cash: float, fee: float, slippage_bps: float, size: float,
                 position: float = 0.0, side: int = 0):
        check_costs(fee, slippage_bps, size, cash)  # the backtest's own limits, so bad costs fail alike
        self.cash = float(cash)
        self.position = float(position)
        self.side = int(side)
        self.fee, self.slippage_bps, self.size = fee, slippage_bps, size

    def equity(self, price: float) -> float:
        """Cash plus the position marked at `price`, quote units."""
        return self.cash + self.position * price

    def execute(self, target: int, price: float, *, time: int, order_time: int) -> Fill | None:
        """Move to `target` (-1, 0, 1) at the open `price` of candle `time`; None if already there.

        A flip (long to short or back) is one fill of the summed quantity: closing and opening at the
        same open, each leg paying its own fee, adds up to exactly that.
        """
        if target == self.side:
            return None
        order_side = 1 if target > self.side else -1
        # Close what is held, then size the new position on the cash that leaves (backtest rule).
        close_qty = abs(self.position)
        price_out, fee_out = fill(order_side, price, close_qty, fee=self.fee, slippage_bps=self.slippage_bps)
        cash = self.cash + self.position * price_out - fee_out
        open_qty = self.size * cash / price_out if target else 0.0
        _, fee_in = fill(order_side, price, open_qty, fee=self.fee, slippage_bps=self.slippage_bps)
        self.cash = cash - target * open_qty * price_out - fee_in
        self.position, self.side = target * open_qty, target
        return Fill(time=time, order_time=order_time, side="buy" if order_side > 0 else "sell",
                    quantity=close_qty + open_qty, price=price_out, fee=fee_out + fee_in)
