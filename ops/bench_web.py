"""The web view of ``scenestream serve`` in a real browser: how long the page takes to load, and how long from
asking in its chat box to the scene card appearing. Its helpers drive the browser tests too
(tests/integration/test_web.py).

    python -m scenestream.ops.bench_web [--loads 5] [--asks 5] [--json]

One run starts ``scenestream serve`` on its own embedded stack (this environment's ``SCENESTREAM_*`` settings, a
fresh data directory, one API key), then in Debian's headless Chromium (Playwright's Python package, the system
browser: ``apt-get install chromium``; never a downloaded one):

* ``--loads`` times: a new browser context opens ``/view/`` and gives the key; ``load_ms`` is the navigation's
  load event (HTML, CSS, JS), ``ready_ms`` the moment the key was accepted and the tenant shown, ``live_ms``
  the moment the live feed answered;
* ``--asks`` questions, one after another, in the chat box: ``scene_ms`` from the submit to the scene card on
  the page (the first streamed chunk, read by the page's own clock), ``answer_ms`` to the whole answer.

Medians (and every value) are reported; on a shared CPU they move with the machine's load.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence

BROWSERS = ("chromium", "chromium-browser")
KEY = "bench-key"
QUESTIONS = (
    "Почему я не чувствую шаг в себе?",
    "How many minutes are in a day?",
    "Тишина перед входом дрожит.",
    "What is the meaning of a promise?",
    "Дыхание замедляется, плечи тяжелеют.",
)


class NoBrowser(RuntimeError):
    """Playwright or the system Chromium is missing (the message says how to install them)."""


def chromium_path() -> str:
    """The system Chromium's path; :class:`NoBrowser` naming how to install it when there is none."""
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    raise NoBrowser(
        "no Chromium on PATH (looked for " + ", ".join(BROWSERS) + "): the browser tests drive Debian's headless "
        "Chromium; install it with `sudo apt-get install chromium` (`bash ops/install.sh test` does it as root)"
    )


def sync_playwright() -> Any:
    try:
        from playwright.sync_api import sync_playwright as start
    except ImportError as exc:
        raise NoBrowser(
            "Playwright's Python package is missing: pip install -e '.[test]' (or pip install playwright)"
        ) from exc
    return start()


def launch(playwright: Any) -> Any:
    """Headless system Chromium (Playwright never downloads a browser here)."""
    return playwright.chromium.launch(executable_path=chromium_path(), headless=True)


def open_view(page: Any, url: str, key: str, timeout_ms: float = 60_000) -> dict:
    """``url``/ opened (redirected to /view/) and ``key`` given in the key dialog; the page's timings (ms from the
    navigation's start): ``load_ms`` (load event), ``ready_ms`` (key accepted), ``live_ms`` (feed connected)."""
    page.goto(f"{url}/", wait_until="load", timeout=timeout_ms)
    page.locator("#key").fill(key)
    page.locator("#key-submit").click()
    page.locator("#tenant").filter(has_text="tenant ").wait_for(timeout=timeout_ms)
    page.locator("#feed-state.live").wait_for(timeout=timeout_ms)
    found = page.evaluate(
        """() => {
            const nav = performance.getEntriesByType("navigation")[0];
            const mark = (name) => performance.getEntriesByName(name)[0]?.startTime;
            return {load_ms: nav.loadEventEnd, ready_ms: mark("view-ready"), live_ms: mark("feed-live")};
        }"""
    )
    return {name: round(value, 1) if value is not None else None for name, value in found.items()}


def ask(page: Any, text: str, timeout_ms: float = 240_000) -> Any:
    """``text`` asked in the chat box; the new card (a Locator) once its answer is final."""
    page.goto(page.url.split("#")[0] + "#/chat")
    before = page.locator("#thread > .card").count()
    page.locator("#question").fill(text)
    page.locator("#ask").click()
    page.wait_for_function(f"document.querySelectorAll('#thread > .card').length > {before}", timeout=timeout_ms)
    newest = page.locator("#thread > .card").first
    newest.locator(".answer[data-state=final], .answer[data-state=failed]").wait_for(timeout=timeout_ms)
    # pinned by its message id: "first" would follow the next card asked
    return page.locator(f'#thread > .card[data-message-id="{newest.get_attribute("data-message-id")}"]')


def card_times(card: Any) -> dict:
    """The card's own clock: ms from the submit to its scene, its first token and its whole answer."""
    return card.evaluate(
        "(c) => ({scene_ms: +c.dataset.sceneMs, first_token_ms: +c.dataset.firstTokenMs, "
        "answer_ms: +c.dataset.answerMs})"
    )


def median(values: Sequence[float]) -> Optional[float]:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 1) if values else None


def run(args: argparse.Namespace) -> dict:
    from scenestream.serving import serve_process

    data = Path(tempfile.mkdtemp(prefix="scenestream-bench-web-"))
    with serve_process(data, {"SCENESTREAM_API_KEYS": f"{KEY}=bench"}, ready_timeout=600) as served:
        with sync_playwright() as playwright:
            browser = launch(playwright)
            loads = []
            for _ in range(args.loads):
                context = browser.new_context()
                loads.append(open_view(context.new_page(), served.url, KEY))
                context.close()
            context = browser.new_context()
            page = context.new_page()
            open_view(page, served.url, KEY)
            asks = []
            for i in range(args.asks):
                card = ask(page, QUESTIONS[i % len(QUESTIONS)])
                asks.append(card_times(card))
            browser.close()
    report: dict[str, Any] = {"ready_s": served.ready_s, "loads": loads, "asks": asks}
    for name in ("load_ms", "ready_ms", "live_ms"):
        report[f"{name}_p50"] = median([row[name] for row in loads])
    for name in ("scene_ms", "first_token_ms", "answer_ms"):
        report[f"ask_{name}_p50"] = median([row[name] for row in asks])
    return report


def render(report: dict) -> str:
    return (
        f"serve ready in {report['ready_s']} s; page (p50 of {len(report['loads'])}): load event "
        f"{report['load_ms_p50']} ms, key accepted {report['ready_ms_p50']} ms, live feed {report['live_ms_p50']} ms; "
        f"ask → scene card (p50 of {len(report['asks'])}) {report['ask_scene_ms_p50']} ms, first token "
        f"{report['ask_first_token_ms_p50']} ms, answer {report['ask_answer_ms_p50']} ms"
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=5, help="Page loads, each in a fresh browser context.")
    parser.add_argument("--asks", type=int, default=5, help="Questions asked in the chat box, one after another.")
    parser.add_argument("--json", action="store_true", help="Print one JSON document.")
    args = parser.parse_args(argv)
    try:
        report = run(args)
    except NoBrowser as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2, ensure_ascii=False) if args.json else render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
