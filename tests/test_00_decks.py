"""Handout decks (`make slides`): opened in headless Chromium with the network blocked.

Building a deck executes its notebook, so this builds two — the talk and one short lesson —
not all of them (`make slides` does all). Each must initialise reveal.js, show as many slides as
the notebook's slide tags say, log no console error, send no request off the machine, and draw a
first slide that is not blank. Without Chromium (Debian: apt-get install chromium) these skip.
"""
import importlib.util
import os
import sys
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
DECKS = ["00_brown_bag_talk", "03b_leases_and_redlock"]


def load_script(name):
    spec = importlib.util.spec_from_file_location(f"{name}_script", ROOT / "scripts" / f"{name}.py")
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)   # for dataclasses
    spec.loader.exec_module(module)
    return module


slides = load_script("slides")
deck_browser = load_script("deck_browser")



@pytest.fixture
def chromium():
    """Skip without Chromium, in one line; fail instead with CHROMIUM_REQUIRED set (as in CI)."""
    if not deck_browser.chromium_path():
        missing = pytest.fail if os.environ.get("CHROMIUM_REQUIRED") else pytest.skip
        missing("no Chromium to open decks in (apt-get install chromium, or set CHROMIUM)")


class LoadedURLs(HTMLParser):
    """What a page loads by itself: script and img src, stylesheet href (not links to click)."""

    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("script", "img", "iframe") and attrs.get("src"):
            self.urls.append(attrs["src"])
        if tag == "link" and attrs.get("href"):
            self.urls.append(attrs["href"])


def remote_loads(html: str) -> list[str]:
    parser = LoadedURLs()
    parser.feed(html)
    found = [url for url in parser.urls if url.startswith(("http:", "https:", "//"))]
    for marker in ("@import url(http", "url(https://", "from 'https://", 'from "https://'):
        if marker in html:
            found.append(marker)
    return found


def is_blank(png: Path) -> bool:
    from PIL import Image, ImageStat

    with Image.open(png) as image:
        grey = image.convert("L")
        return max(ImageStat.Stat(grey).stddev) < 5 or len(grey.getcolors(1 << 16) or []) < 8


def check_deck(deck: Path, screenshot: Path):
    """Open `deck` offline; its report, after the checks every deck must pass."""
    html = deck.read_text(encoding="utf-8")
    assert remote_loads(html) == []
    report = deck_browser.open_deck(deck, screenshot=screenshot)
    assert report.initialised, deck.name
    assert report.left_the_machine == []
    assert report.console_errors == []
    notebook = nbformat.read(ROOT / "notebooks" / f"{deck.name.split('.')[0]}.ipynb", as_version=4)
    assert report.total_slides == deck_browser.slides_in(notebook)
    assert not is_blank(report.screenshot)
    assert "data:image/png;base64," in html           # the figures, embedded
    return report


# One test for both decks: building one executes its notebook, which is the expensive part, and
# test processes (pytest -n) would each build them again for tests split across them.
@pytest.mark.usefixtures("chromium")
@pytest.mark.timeout(480)
def test_the_decks_open_offline_with_every_slide_and_nothing_from_the_network(tmp_path):
    paths = [ROOT / "notebooks" / f"{name}.ipynb" for name in DECKS]
    decks = slides.build(paths, tmp_path / "slides")
    reports = {deck.name.split(".")[0]: check_deck(deck, tmp_path / f"{deck.name}.png")
               for deck in decks}
    talk = reports["00_brown_bag_talk"]
    assert talk.title.lower().startswith("celery, with redis")
    assert talk.formulas >= 1          # MathJax, from the deck's own files
    assert decks[0].read_text(encoding="utf-8").count('class="notes"') >= 9   # speaker notes
    assert sorted(path.name for path in (tmp_path / "slides").iterdir()) == sorted(
        [deck.name for deck in decks] + ["assets"])   # one folder: copy it to a USB stick


@pytest.mark.usefixtures("chromium")
@pytest.mark.timeout(120)
def test_the_check_sees_a_deck_that_needs_the_network(tmp_path):
    """nbconvert's own defaults (reveal.js from unpkg, require.js from cdnjs): blocked, the deck
    never starts, and the test says which requests tried to leave."""
    from nbconvert import SlidesExporter

    notebook = nbformat.read(ROOT / "notebooks" / "00_brown_bag_talk.ipynb", as_version=4)
    html, _ = SlidesExporter().from_notebook_node(notebook)
    deck = tmp_path / "cdn.slides.html"
    deck.write_text(html, encoding="utf-8")
    assert remote_loads(html)
    report = deck_browser.open_deck(deck, ready_timeout_ms=5000)
    assert not report.initialised
    assert any("unpkg.com" in url or "cdnjs" in url for url in report.left_the_machine)


def test_the_talks_title_slide_screenshot_is_committed_and_not_blank():
    png = ROOT / "img" / "00_talk_title.png"
    assert png.is_file(), "make slides draws it"
    assert not is_blank(png)


def test_the_decks_folder_is_not_committed():
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert "slides/" in ignored
