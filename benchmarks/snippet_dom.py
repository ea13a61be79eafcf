"""The snippet's cost on a big page, in headless Chromium: main-thread time with and without it.

    python benchmarks/snippet_dom.py                # about a minute; needs Debian's chromium
    python benchmarks/snippet_dom.py --tree ../old  # the snippet (and service) of another checkout

A catalogue page of 3,000 items, as a shop's infinite scroll builds it, then grows: 50 items
appended in one task, and 20 blocks appended to <body>. Each figure is the time from the
first change to the moment the page's next task runs (the snippet's mutation observer has
had its turn by then), the median of `--rounds` page loads, the same page with and without
the snippet's tag, against `swapline serve` on a private Valkey and the demo's rules. Last,
a page that writes its own text (its number) back a task after anything changes it: how many
rounds until the snippet gives in, and how long that takes.
"""

from __future__ import annotations

import argparse
import http.server
import statistics
import tempfile
import threading
from pathlib import Path

from harness import ROOT, free_port, start_service, store, table
from playwright.sync_api import sync_playwright

RULES = """
site: bench
origins: [http://127.0.0.1:{port}]
phone: "+7 812 645-17-14"
pools:
  - id: city
    numbers: ["+7 812 700-00-01", "+7 812 700-00-02", "+7 812 700-00-03"]
"""
PAGE = """<!doctype html><meta charset="utf-8"><title>catalogue</title>
{script}<h1>Кондиционеры</h1><p>Звоните: +7 (812) 645-17-14</p><ul id="catalogue"></ul>"""
SCRIPT = '<script async src="{service}/s.js" data-site="bench"></script>'
# (what, how many): each run times one change and the observer's turn after it.
GROW = """async ([what, count]) => {
    const list = document.getElementById('catalogue'), started = performance.now();
    for (let i = 0; i < count; i++) {
        const node = document.createElement(what === 'items' ? 'li' : 'div');
        node.textContent = 'Сплит-система ' + list.childElementCount + ', 8 (812) 645-17-1' + (i % 10);
        (what === 'items' ? list : document.body).appendChild(node);
    }
    await new Promise((resolve) => setTimeout(resolve));
    return performance.now() - started;
}"""
STEPS = (("3,000 items, first built", "items", 3000), ("50 items appended", "items", 50),
         ("20 blocks appended to <body>", "blocks", 20))
# The page puts its text back a task after it changed, until a task finds it unchanged (the
# snippet answers within the task that wrote, in its observer's microtask). At most 500 rounds.
FIGHT = """() => new Promise((resolve) => {
    const own = 'Звоните: +7 (812) 645-17-14', block = document.body.appendChild(document.createElement('p'));
    const started = performance.now();
    let rounds = 0;
    const check = () => {
        if (block.textContent === own || rounds === 500) return resolve([rounds, performance.now() - started]);
        rounds++;
        block.textContent = own;
        setTimeout(check);
    };
    block.textContent = own;
    setTimeout(check);
})"""
FOUGHT = "a page that writes its number back"


def serve_pages(service: str, port: int) -> http.server.ThreadingHTTPServer:
    pages = {"/with": PAGE.format(script=SCRIPT.format(service=service)), "/without": PAGE.format(script="")}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = pages.get(self.path, "").encode()
            self.send_response(200 if body else 404)
            self.send_header("content-type", "text/html; charset=utf-8")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7, help="page loads per variant (default 7)")
    parser.add_argument("--tree", type=Path, default=ROOT, help="the checkout whose service runs (default: this)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="swapline-dom-") as tmp, store() as redis_url:
        work = Path(tmp)
        port = free_port()
        (work / "rules").mkdir()
        (work / "rules" / "bench.yaml").write_text(RULES.format(port=port))
        service = start_service(redis_url, work / "rules", work, tree=args.tree.resolve())
        server = serve_pages(service.base, port)  # on the port the rules name as the site's origin
        try:
            times = measure(f"http://127.0.0.1:{port}", args.rounds)
        finally:
            server.shutdown()
            service.stop()
    rows = []
    for label, _, _ in STEPS:
        without, with_ = statistics.median(times["without", label]), statistics.median(times["with", label])
        rows.append((label, f"{without:.1f}", f"{with_:.1f}", f"{with_ / without:.2f}x", f"{with_ - without:+.1f}"))
    print(table(("change", "ms without", "ms with the snippet", "ratio", "difference ms"), rows))
    rounds = statistics.median(times["with", FOUGHT + " (rounds)"])
    print(f"\n{FOUGHT}: {rounds:.0f} rounds with the snippet (at most 500), "
          f"{statistics.median(times['with', FOUGHT]):.1f} ms; without it "
          f"{statistics.median(times['without', FOUGHT + ' (rounds)']):.0f} rounds")


def measure(origin: str, rounds: int) -> dict[tuple[str, str], list[float]]:
    times: dict[tuple[str, str], list[float]] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                             args=["--headless", "--no-sandbox", "--disable-gpu"])
        context = browser.new_context(user_agent="Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 "
                                                 "(KHTML, like Gecko) Chrome/126.0 Safari/537.36")
        for _ in range(rounds):
            for variant in ("without", "with"):
                page = context.new_page()
                page.goto(f"{origin}/{variant}")
                if variant == "with":
                    page.evaluate("new Promise((resolve) => swapline.ready(resolve))")
                for label, what, count in STEPS:
                    times.setdefault((variant, label), []).append(page.evaluate(GROW, [what, count]))
                rounds, took = page.evaluate(FIGHT)
                times.setdefault((variant, FOUGHT + " (rounds)"), []).append(rounds)
                times.setdefault((variant, FOUGHT), []).append(took)
                page.close()
        browser.close()
    return times


if __name__ == "__main__":
    main()
