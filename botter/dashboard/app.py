"""The Dash app of botter-dashboard and the server that runs it.

Two pages: `/` lists the complete runs under runs_dir with their key figures and links to their
paper runs; `/paper?run=<run>&name=<paper run>` shows one paper run, and keeps it current: every
`refresh_s` seconds the page asks for the ledger's newest candle (one small query) and, only when
it has changed, reads the ledger again and redraws. Dash serves its own JavaScript, Plotly's
included, from the installed packages: the page needs no internet.
"""

import logging
import signal
import socket
import threading
from pathlib import Path
from urllib.parse import parse_qs, urlencode

import dash
import pandas as pd
from dash import Input, Output, State, dcc, html
from dash.exceptions import PreventUpdate

from botter.dashboard import data, figures
from botter.errors import BotterError

log = logging.getLogger(__name__)

STYLE = """
body { font-family: system-ui, sans-serif; margin: 0 1.5em 2em; color: #222; }
h1 { font-size: 1.4em; margin: 0.6em 0 0.2em; } h2 { font-size: 1.1em; margin: 1em 0 0.3em; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { padding: 0.15em 0.7em; border-bottom: 1px solid #e4e4e4; text-align: right; }
th { vertical-align: bottom; } td { vertical-align: top; }
#status td, #status th { white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
#status th { text-align: left; font-weight: 600; }
.row { display: flex; gap: 1.5em; align-items: flex-start; flex-wrap: wrap; }
.grow { flex: 1 1 600px; min-width: 0; }
.note { color: #666; font-size: 0.85em; }
.error { color: #b00020; font-weight: 600; }
.in-sample { background: #b00020; color: white; padding: 0.1em 0.5em; border-radius: 0.3em; }
.model-chart { width: 300px; image-rendering: pixelated; border: 1px solid #ccc; background: black; }
.bar { display: inline-block; height: 0.8em; background: #1f77b4; vertical-align: middle; }
"""


def make_app(runs_dir, *, refresh_s: float = 2.0, candles: int = 300, fills: int = 200) -> dash.Dash:
    """The dashboard over the run folders under `runs_dir`: a page polls its paper run's ledger
    every `refresh_s` seconds, draws its newest `candles` candles and lists its newest `fills` fills."""
    runs_dir = Path(runs_dir)
    app = dash.Dash(__name__, title="botter dashboard", update_title=None, suppress_callback_exceptions=True,
                    serve_locally=True)
    app.index_string = app.index_string.replace("{%css%}", "{%css%}<style>" + STYLE + "</style>")
    app.layout = html.Div([dcc.Location(id="url"), html.Div(id="page")])

    @app.callback(Output("page", "children"), Input("url", "pathname"), Input("url", "search"))
    def route(pathname, search):
        query = {k: v[-1] for k, v in parse_qs((search or "").lstrip("?")).items()}
        try:
            if pathname == "/paper":
                return paper_page(runs_dir, query.get("run", ""), query.get("name", ""), refresh_s, candles)
            return index_page(runs_dir)
        except BotterError as e:
            return [dcc.Link("all runs", href="/"), html.P(str(e), className="error")]

    @app.callback(
        Output("status", "children"), Output("equity", "figure"), Output("candles", "figure"),
        Output("chart", "children"), Output("fills", "children"), Output("updated", "children"),
        Output("seen", "data"),
        Input("tick", "n_intervals"), Input("symbol", "value"), State("where", "data"), State("seen", "data"),
    )
    def update(_, symbol, where, seen):
        try:
            run, path = data.locate(runs_dir, where["run"], where["name"])
            if seen is not None and seen == {"last": data.last_candle(path), "symbol": symbol}:
                raise PreventUpdate  # nothing new: the page stays as it is
            paper = data.read_paper(path)
        except BotterError as e:
            return html.P(str(e), className="error"), *([dash.no_update] * 4), str(e), None
        last = "no candle yet" if paper.last is None else f"{pd.Timestamp(paper.last, unit='ms'):%Y-%m-%d %H:%M} UTC"
        rows = data.status_rows(paper.summary)
        symbol_bars, symbol_fills = (t[t["symbol"] == symbol] for t in (paper.bars, paper.fills))
        return (
            html.Table([html.Tr([html.Th(c) for c in rows[0]]), *(html.Tr([html.Th(r[0]), *map(html.Td, r[1:])])
                                                                  for r in rows[1:])]),
            figures.equity(paper.curves, paper.bars),
            figures.candles(symbol_bars, symbol_fills, candles),
            chart_panel(run, paper, symbol),
            fills_table(paper.fills, fills),
            f"newest candle {last}; checks for new ones every {refresh_s:g} s",
            {"last": paper.last, "symbol": symbol},
        )

    return app


def index_page(runs_dir: Path) -> list:
    """The runs with their key figures, then their paper runs with theirs (links to their pages)."""
    runs, skipped = data.find_runs(runs_dir)
    figs = {}
    for key, run in list(runs.items()):
        try:
            figs[key] = data.run_figures(run)
        except BotterError as e:  # one damaged folder is listed with why; the others are shown
            skipped.append((key, str(e)))
            del runs[key]
    left_out = [html.H2(f"left out: {len(skipped)} folder(s) that are not complete runs"),
                _table(["Folder", "Why"], [[key, html.Span(why, className="error")] for key, why in skipped],
                       "skipped")] if skipped else []
    if not runs:
        return [html.H1("botter runs"), html.P(f"no complete run under {runs_dir} yet: train one with "
                                               f"botter-train hydra.run.dir={runs_dir}/<name>, then reload"), *left_out]
    papers = []
    for key, run in runs.items():
        for name in data.paper_names(run):
            link = dcc.Link(name, href="/paper?" + urlencode({"run": key, "name": name}))
            try:
                s = data.read_paper(data.ledger_path(run, name)).summary["portfolio"]
                papers.append([link, key, *(_text(s.get(k)) for k in PAPER_KEYS)])
            except BotterError as e:
                papers.append([link, key, html.Span(str(e), className="error")])
    return [
        html.H1("botter runs"),
        html.P(f"complete runs under {runs_dir}: {len(runs)}; their test metrics and the backtest of their test "
               "split", className="note"),
        _table(["Run", *next(iter(figs.values()))], [[key, *map(_text, f.values())] for key, f in figs.items()], "runs"),
        html.H2("paper runs"),
        _table(["Paper run", "Run", *PAPER_KEYS], papers, "papers") if papers else
        html.P("none yet: start one with botter-paper run_dir=<run>", className="note"),
        *left_out,
    ]


# The whole account's figures (the summary's "portfolio" column) of each paper run on the index.
PAPER_KEYS = ("Symbol", "Feed", "Sample", "Last candle", "Candles", "Skipped", "Equity", "Return [%]",
              "Buy & Hold Return [%]", "Max. Drawdown [%]", "# Fills")


def _table(head: list, rows: list[list], id: str) -> html.Table:
    return html.Table([html.Tr([html.Th(h) for h in head]), *(html.Tr([html.Td(v) for v in row]) for row in rows)],
                      id=id)


def _text(v) -> str:
    """A figure as a table shows it: 4 significant digits, times to the minute."""
    if v is None or (isinstance(v, str) and not v):
        return ""
    if isinstance(v, pd.Timestamp):
        return f"{v:%Y-%m-%d %H:%M}"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def paper_page(runs_dir: Path, key: str, name: str, refresh_s: float, candles: int) -> list:
    """The page of one paper run; its contents are filled by the `update` callback."""
    _, path = data.locate(runs_dir, key, name)
    with data.reading(path) as ledger:  # the title only: the figures come with the first update
        meta = ledger.meta()
    badge = [html.Span("IN-SAMPLE", className="in-sample")] if meta.get("sample") == "IN-SAMPLE" else []
    symbols = meta.get("symbols", [])
    title = f"paper run {name} of {key}: {', '.join(symbols)} {meta.get('timeframe', '')}, {meta.get('feed', '')} feed "
    return [
        dcc.Link("all runs", href="/"),
        html.H1([title, *badge]),
        html.P(id="updated", className="note"),
        dcc.Store(id="where", data={"run": key, "name": name}), dcc.Store(id="seen"),
        dcc.Interval(id="tick", interval=int(refresh_s * 1000)),
        html.Div(className="row", children=[
            html.Div([html.H2("status (botter-paper mode=status)"), html.Div(id="status")]),
            html.Div([html.H2("equity against buy & hold, drawdowns, side held (UTC)"),
                      dcc.Graph(id="equity", config={"displaylogo": False})], className="grow"),
        ]),
        html.Div(["symbol: ", dcc.RadioItems(symbols, symbols[0] if symbols else None, id="symbol", inline=True,
                                             style={"display": "inline-block"})],
                 style={"display": "flex" if len(symbols) > 1 else "none", "marginTop": "1em"}),
        html.Div(className="row", children=[
            html.Div([html.H2(f"the newest candles (up to {candles}) and their fills (UTC)"),
                      dcc.Graph(id="candles", config={"displaylogo": False})], className="grow"),
            html.Div([html.H2("the model's last chart"), html.Div(id="chart")], style={"width": "320px"}),
        ]),
        html.H2("fills"), html.Div(id="fills"),
    ]


def chart_panel(run, paper: data.Paper, symbol: str) -> list:
    """The chart the model read at `symbol`'s newest candle, its probabilities and what it decided."""
    image, line = data.chart(run, paper, symbol)
    out = [html.Img(src=figures.png(image), className="model-chart", id="model-chart") if image is not None else None,
           html.P(line, className="note")]
    d = paper.decisions.get(symbol)
    if d is None:
        return out
    probs = {k.removeprefix("p_"): float(d[k]) for k in ("p_down", "p_flat", "p_up") if pd.notna(d.get(k))}
    if probs:
        out.append(html.Table([html.Tr([html.Th(k), html.Td(f"{v:.4f}"),
                                        html.Td(html.Span(className="bar", style={"width": f"{100 * v:.0f}px"}))])
                               for k, v in probs.items()], id="probabilities"))
    else:
        out.append(html.P("the model was not asked at this candle (no chart): flat", className="note"))
    out.append(html.P(f"next open: {paper.summary.at['Next open', symbol]}"))
    return out


def fills_table(fills, n: int) -> list:
    """The newest `n` fills, newest first."""
    if fills.empty:
        return [html.P("no fill yet", className="note")]
    newest = fills.iloc[::-1].head(n)
    head = ["filled at the open of", "symbol", "ordered at the close of", "side", "quantity", "price", "fee"]
    rows = [[_text(r.time), r.symbol, _text(r.order_time), r.side, f"{r.quantity:.8g}", f"{r.price:.8g}",
             f"{r.fee:.6g}"] for r in newest.itertuples()]
    return [html.P(f"{len(fills)} fills (UTC), the newest {len(newest)} first", className="note"),
            _table(head, rows, "fills-table")]


def serve(app: dash.Dash, host: str, port: int) -> None:
    """Serve `app` on host:port until SIGINT (Ctrl-C) or SIGTERM, then stop cleanly.

    A port in use or a host it cannot listen on raises BotterError before anything is served.
    """
    from werkzeug.serving import make_server

    try:  # bound here: werkzeug's own bind prints its message and exits 1
        listening = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    except (OSError, OverflowError) as e:
        raise BotterError(f"cannot listen on {host}:{port} ({e}): pick a free port=... (or another host=...)") \
            from None
    port = listening.getsockname()[1]  # port=0: the free one the OS picked, so that the line below is true
    with listening:
        server = make_server(host, port, app.server, threaded=True, fd=listening.fileno())  # serves a copy of it
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request: a page polls

    def stop(signum, frame):
        log.info("%s: stopping", signal.Signals(signum).name)
        # shutdown() waits for serve_forever to return: it must not run in the thread that serves.
        threading.Thread(target=server.shutdown, daemon=True).start()

    # Only the main thread may install handlers; in another thread (a test) the caller stops it.
    main = threading.current_thread() is threading.main_thread()
    old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
    print(f"botter-dashboard: http://{host}:{port}/ (Ctrl-C stops it)", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        for s, h in old.items():
            signal.signal(s, h)
    print("botter-dashboard: stopped", flush=True)
