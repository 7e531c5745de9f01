"""The simulated broker: fills target positions at the next candle's open by the backtest's rules.

It never talks to an exchange. The fill price, fee, sizing and ruin rule are those of botter.backtest
(its `fill` is imported, not copied): any change of target closes the position held and, when the new
target is not flat and cash is left, opens one whose notional and entry fee take `size` x equity at the
same open; the quantity is then held until the target changes. Marked at a close at equity <= 0, the
account is closed out and trades no more.
"""

from botter.backtest import check_costs, fill
from botter.paper.ledger import Fill


class Broker:
    """A paper account in one symbol: cash (quote units) and a position (base units).

    fee: fraction of the notional per side; slippage_bps: basis points against the trader;
    size: fraction of equity put in each position, in (0, 1]. cash, position, side: the account's
    state, a new account's or the one a ledger recorded (any state, a ruined one included: only the
    settings are checked).

    Per candle: `execute` the target at its open, then `mark` the account at its close.
    """

    def __init__(self, *, cash: float, fee: float, slippage_bps: float, size: float,
                 position: float = 0.0, side: int = 0):
        check_costs(fee, slippage_bps, size)  # the backtest's own limits, so bad costs fail alike
        self.cash = float(cash)
        self.position = float(position)
        self.side = int(side)
        self.fee, self.slippage_bps, self.size = fee, slippage_bps, size

    @property
    def ruined(self) -> bool:
        """True once the account has nothing: flat with no cash (what `mark` leaves at equity <= 0, and
        what a ledger row records of it). A ruined account trades no more."""
        return self.position == 0 and self.cash <= 0

    def equity(self, price: float) -> float:
        """Cash plus the position marked at `price`, quote units."""
        return self.cash + self.position * price

    def mark(self, price: float) -> float:
        """The equity at the candle's close `price`, after the ruin rule: at <= 0 the position is
        closed at that close and the account is left flat with no cash (the loss beyond the equity is
        not carried, as in the backtest and backtesting.py): ruined for good. Returns the equity."""
        equity = self.equity(price)
        if equity > 0:
            return equity
        self.cash, self.position, self.side = 0.0, 0.0, 0
        return 0.0

    def execute(self, target: int, price: float, *, time: int, order_time: int) -> Fill | None:
        """Move to `target` (-1, 0, 1) at the open `price` of candle `time`; None if already there or
        ruined.

        A flip (long to short or back) is one fill of the summed quantity: closing and opening at the
        same open, each leg paying its own fee, adds up to exactly that. A close that leaves no cash
        opens nothing (the close of that candle then ruins the account).
        """
        if target == self.side or self.ruined:
            return None
        order_side = 1 if target > self.side else -1
        # Close what is held, then size the new position on the cash that leaves (backtest rule).
        close_qty = abs(self.position)
        price_out, fee_out = fill(order_side, price, close_qty, fee=self.fee, slippage_bps=self.slippage_bps)
        cash = self.cash + self.position * price_out - fee_out
        open_qty = self.size * cash / (price_out * (1 + self.fee)) if target and cash > 0 else 0.0
        _, fee_in = fill(order_side, price, open_qty, fee=self.fee, slippage_bps=self.slippage_bps)
        self.cash = cash - target * open_qty * price_out - fee_in
        self.position, self.side = target * open_qty, target if open_qty else 0
        return Fill(time=time, order_time=order_time, side="buy" if order_side > 0 else "sell",
                    quantity=close_qty + open_qty, price=price_out, fee=fee_out + fee_in)
