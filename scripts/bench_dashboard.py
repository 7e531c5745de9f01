"""botter-dashboard: how long a paper run's page takes to load in headless Chromium, for a long ledger
against a short one.

    .venv/bin/python scripts/bench_dashboard.py --run-dir <a botter-train run> [--candles 100000] [--short 1000]

Needs Debian's chromium and chromium-driver. A copy of the run (its paper runs left out) gets two
synthetic paper ledgers (scripts/synthetic.py: random-walk 5m candles traded on random targets,
written by Ledger.record); `botter-dashboard` serves them, and the browser loads each page three
times (after one load that fetches Plotly's JavaScript and loads the run's model): seconds from
the request to the page showing the status table, both figures and the model's chart.
Prints the median of each and the ratio. Goal: a 100,000-candle page in under 5 s.
"""

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import synthetic

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# Without the networking flags Chromium's own background connections are refused in a closed network.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1400,1800"]


def chromium(profile: Path):
    """Headless Chromium (Debian's, driven by its chromedriver) with a fresh profile in `profile`."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Served:
    """A running botter-dashboard: its address, its process, and all it printed once stopped."""

    url: str
    proc: subprocess.Popen
    output: str = ""


@contextmanager
def serving(runs_dir, *overrides: str, timeout: float = 120.0):
    """`botter-dashboard runs_dir=...` running on a free port, stopped with SIGTERM at the end of
    the block (then its exit code and output are there to check)."""
    port = free_port()
    script = Path(sys.executable).parent / "botter-dashboard"
    proc = subprocess.Popen([str(script), f"runs_dir={runs_dir}", f"port={port}", *overrides],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    served = Served(f"http://127.0.0.1:{port}", proc)
    deadline = time.monotonic() + timeout  # a guard against a hang, not a speed check
    try:
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    raise RuntimeError(f"botter-dashboard did not start: {proc.communicate()[0][-2000:]}") from None
                time.sleep(0.1)
        yield served
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            served.output = proc.communicate(timeout=60)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            served.output = proc.communicate()[0]


def paper_url(url: str, run: str, name: str) -> str:
    return f"{url}/paper?{urlencode({'run': run, 'name': name})}"


def status(driver) -> dict[str, list[str]]:
    """The status table of a paper page: {figure: its value in each column as shown}, the header
    (the columns) under ""."""
    from selenium.webdriver.common.by import By

    rows = [[cell.text for cell in row.find_elements(By.CSS_SELECTOR, "th, td")]
            for row in driver.find_elements(By.CSS_SELECTOR, "#status tr")]
    return {row[0]: row[1:] for row in rows}


def drawn(driver, candles: int) -> bool:
    """Whether the page shows `candles` candles in its status table, both figures and the model's chart."""
    from selenium.common.exceptions import WebDriverException

    script = ("const g = id => document.querySelector('#' + id + ' .js-plotly-plot');"
              "return [g('equity'), g('candles')].every(p => p && p.data && p.data.length > 0 && p.data[0].x.length > 0)"
              " && !!document.querySelector('#model-chart');")
    try:
        return status(driver).get("Candles", [None])[-1] == str(candles) and driver.execute_script(script)
    except WebDriverException:  # the page was redrawn under the query (a stale element): ask again
        return False


def load(driver, url: str, candles: int, timeout: float = 300.0) -> float:
    """Seconds from requesting `url` to the page being drawn with `candles` candles."""
    from selenium.webdriver.support.ui import WebDriverWait

    t0 = time.perf_counter()
    driver.get(url)
    WebDriverWait(driver, timeout, poll_frequency=0.02).until(lambda d: drawn(d, candles))
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run-dir", required=True, help="a botter-train run folder (its model draws the chart)")
    ap.add_argument("--candles", type=int, default=100_000)
    ap.add_argument("--short", type=int, default=1000)
    ap.add_argument("--loads", type=int, default=3)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        runs_dir = Path(tmp) / "runs"
        shutil.copytree(args.run_dir, runs_dir / "run", ignore=shutil.ignore_patterns("paper", "*.pt.tmp"))
        ledgers = {}
        for n in (args.short, args.candles):
            t0 = time.perf_counter()
            synthetic.paper_ledger(runs_dir / "run" / "paper" / f"synthetic-{n}" / "ledger.sqlite", n)
            ledgers[n] = f"synthetic-{n}"
            print(f"{n} candles written in {time.perf_counter() - t0:.1f} s (Ledger.record)")
        driver = chromium(Path(tmp) / "profile")
        try:
            with serving(runs_dir) as served:
                load(driver, paper_url(served.url, "run", ledgers[args.short]), args.short)  # Plotly's JS, the model
                seconds = {n: [load(driver, paper_url(served.url, "run", name), n) for _ in range(args.loads)]
                           for n, name in ledgers.items()}
        finally:
            driver.quit()
    for n, s in seconds.items():
        print(f"{n:>7} candles: page drawn in {statistics.median(s):.2f} s (median of {len(s)}: "
              f"{', '.join(f'{x:.2f}' for x in s)})")
    print(f"ratio {args.candles} / {args.short} candles: "
          f"{statistics.median(seconds[args.candles]) / statistics.median(seconds[args.short]):.1f}x "
          f"on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
