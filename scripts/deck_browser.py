"""Open a reveal.js deck in headless Chromium with the network blocked, and say what happened.

Usage::

    $ python scripts/deck_browser.py slides/00_brown_bag_talk.slides.html --screenshot img/00_talk_title.png
    slides: 17, console errors: 0, requests that tried to leave the machine: 0

Used by `tests/test_00_decks.py` and `make slides` (the talk's title slide, img/00_talk_title.png).
Drives Debian's Chromium (/usr/bin/chromium, or CHROMIUM) through Playwright, so Playwright never
downloads a browser of its own. Every request that is not a file or loopback is aborted and
recorded: a deck that needs a CDN shows up as a request that tried to leave, and as a deck that
does not initialise.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}
READY_TIMEOUT_MS = 30_000
# reveal.js is loaded with require.js here, so there is no global `Reveal` to ask: read the page
# as Reveal.getTotalSlides() does (every slide, a stack of subslides not counted itself), and
# take the class "ready" that Reveal.initialize() puts on .reveal as "initialised".
SLIDES = ".reveal .slides section:not(.stack)"


def chromium_path() -> str | None:
    """Debian's Chromium (or CHROMIUM), if this machine has one."""
    return os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class DeckReport:
    initialised: bool = False
    total_slides: int = 0
    formulas: int = 0             # LaTeX typeset by MathJax (loaded from the deck's assets too)
    title: str = ""
    console_errors: list[str] = field(default_factory=list)
    left_the_machine: list[str] = field(default_factory=list)
    screenshot: Path | None = None


def slides_in(notebook) -> int:
    """How many slides a notebook's tags make (reveal template and RISE alike): one per slide or
    subslide tag among the cells shown, skip and notes cells not; the first shown cell starts
    one whatever its tag."""
    kinds = [cell.metadata.get("slideshow", {}).get("slide_type", "-") for cell in notebook.cells]
    shown = [kind for kind in kinds if kind not in ("skip", "notes")]
    starts = sum(kind in ("slide", "subslide") for kind in shown)
    return starts + (0 if shown and shown[0] in ("slide", "subslide") else 1)


def is_local(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("file", "data", "blob", "about") or parts.hostname in LOCAL_HOSTS


def block_the_network(context, report: DeckReport) -> None:
    """Abort (and record) every request that would leave this machine."""
    def route(route_, request):
        if is_local(request.url):
            route_.continue_()
        else:
            report.left_the_machine.append(request.url)
            route_.abort("internetdisconnected")
    context.route("**/*", route)


def watch_console(page, report: DeckReport) -> None:
    page.on("console", lambda message: message.type == "error"
            and report.console_errors.append(message.text))
    page.on("pageerror", lambda error: report.console_errors.append(f"uncaught: {error}"))
    page.on("requestfailed", lambda request: report.console_errors.append(
        f"failed to load {request.url}: {request.failure}"))


def launch(playwright):
    """Headless Debian Chromium, no sandbox needed as root in a container."""
    return playwright.chromium.launch(executable_path=chromium_path(), headless=True,
                                      args=["--no-sandbox", "--disable-dev-shm-usage"])


def count_formulas(page) -> int:
    """Formulas MathJax typeset, once it has finished its first pass (0 without MathJax)."""
    try:
        page.wait_for_function("!window.MathJax || (MathJax.isReady && MathJax.Hub.queue.pending"
                               " === 0 && !MathJax.Hub.queue.running)", timeout=READY_TIMEOUT_MS)
    except Exception:   # Playwright's TimeoutError: none counted
        return 0
    return page.evaluate("document.querySelectorAll('.MathJax_CHTML').length")


def open_deck(deck: Path, screenshot: Path | None = None, width: int = 1280, height: int = 800,
              ready_timeout_ms: int = READY_TIMEOUT_MS) -> DeckReport:
    """Load `deck` offline, wait for reveal.js to be ready; what it loaded and showed."""
    from playwright.sync_api import sync_playwright

    report = DeckReport()
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            context = browser.new_context(viewport={"width": width, "height": height})
            block_the_network(context, report)
            page = context.new_page()
            watch_console(page, report)
            page.goto(deck.resolve().as_uri(), wait_until="load")
            try:
                page.wait_for_selector(".reveal.ready", state="attached",
                                       timeout=ready_timeout_ms)
                report.initialised = True
            except Exception:   # Playwright's TimeoutError: the report says it did not
                return report
            report.formulas = count_formulas(page)
            report.total_slides = page.evaluate(f"document.querySelectorAll('{SLIDES}').length")
            report.title = page.evaluate(f"""(document.querySelector('{SLIDES}.present')
                .querySelector('h1,h2') || {{}}).innerText || ''""")
            if screenshot:
                page.wait_for_timeout(1000)   # the slide transition and fonts settle
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshot))
                report.screenshot = screenshot
        finally:
            browser.close()
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("deck", type=Path)
    parser.add_argument("--screenshot", type=Path, help="save the first slide as this PNG")
    options = parser.parse_args(argv)
    if not options.deck.is_file():
        parser.error(f"no such deck: {options.deck}")
    if not chromium_path():
        print("error: no Chromium found — apt-get install chromium, or set CHROMIUM",
              file=sys.stderr)
        return 2
    report = open_deck(options.deck, options.screenshot)
    print(f"initialised: {report.initialised}, slides: {report.total_slides}, "
          f"formulas: {report.formulas}, "
          f"console errors: {len(report.console_errors)}, requests that tried to leave the "
          f"machine: {len(report.left_the_machine)}")
    for line in report.console_errors + report.left_the_machine:
        print("  ", line)
    ok = report.initialised and not report.console_errors and not report.left_the_machine
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
