"""Presenting live: JupyterLab with jupyterlab-rise, driven in headless Chromium, network blocked.

What a presenter does: open a notebook in JupyterLab, select a cell, press Alt-R (RISE's
"Render as slides"), and run a cell on its slide with Shift-Enter. The server runs on a free
loopback port with a token, in a folder of its own; every request that would leave the machine
is blocked and recorded, JupyterLab's own included. Without Chromium these skip.
"""
import importlib.util
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from labkit.redis_server import die_with_parent, free_port

ROOT = Path(__file__).resolve().parent.parent
TALK = ROOT / "notebooks" / "00_brown_bag_talk.ipynb"
spec = importlib.util.spec_from_file_location("deck_browser_script", ROOT / "scripts/deck_browser.py")
deck_browser = sys.modules[spec.name] = importlib.util.module_from_spec(spec)   # dataclasses
spec.loader.exec_module(deck_browser)



@pytest.fixture(scope="module", autouse=True)
def chromium():   # module-wide: before JupyterLab starts
    """Skip without Chromium, in one line; fail instead with CHROMIUM_REQUIRED set (as in CI)."""
    if not deck_browser.chromium_path():
        missing = pytest.fail if os.environ.get("CHROMIUM_REQUIRED") else pytest.skip
        missing("no Chromium to drive JupyterLab in (apt-get install chromium, or set CHROMIUM)")


def a_live_notebook(path: Path) -> None:
    """Three slides; the second one is a code cell to run on stage."""
    slide = {"slideshow": {"slide_type": "slide"}}
    nbformat.write(new_notebook(cells=[
        new_markdown_cell("# A live slide\n\nPresented with RISE.", metadata=slide),
        new_code_cell("print(6 * 7)", metadata=slide),
        new_markdown_cell("## The end", metadata=slide),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                "language": "python"}, "rise": {"theme": "white"}}), path)


class JupyterLab:
    """`jupyter lab` on a free loopback port, serving `folder`, with a token; always stopped."""

    def __init__(self, folder: Path):
        self.folder, self.port, self.token = folder, free_port(), secrets.token_hex(16)
        self.process = None

    def start(self, timeout: float = 90) -> "JupyterLab":
        state = self.folder / ".jupyter"
        env = {**os.environ, "JUPYTER_CONFIG_DIR": str(state / "config"),
               "JUPYTER_RUNTIME_DIR": str(state / "runtime")}
        command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
                   f"--ServerApp.port={self.port}", f"--IdentityProvider.token={self.token}",
                   f"--ServerApp.root_dir={self.folder}", f"--LabApp.workspaces_dir={state}",
                   "--LabApp.extension_manager=readonly"]   # no look-ups on PyPI
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            command.append("--allow-root")                 # CI runs as root
        self.log = open(self.folder / "jupyterlab.log", "wb")
        self.process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=self.log,
                                        stderr=subprocess.STDOUT, start_new_session=True,
                                        preexec_fn=die_with_parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log_tail()
            try:
                self.api("/api/status")
                return self
            except OSError:
                time.sleep(0.3)
        raise TimeoutError(f"JupyterLab did not answer in {timeout:.0f} s:\n{self.log_tail()}")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}?token={self.token}"

    def api(self, path: str, method: str = "GET"):
        request = urllib.request.Request(self.url(path), method=method)
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.read()

    def log_tail(self) -> str:
        return (self.folder / "jupyterlab.log").read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        """Shut its kernels down, then the server (SIGTERM, SIGKILL of its group if it lingers)."""
        if self.process is None:
            return
        try:
            import json
            for kernel in json.loads(self.api("/api/kernels")):
                self.api(f"/api/kernels/{kernel['id']}", method="DELETE")
        except OSError:
            pass
        for signum, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.process.pid, signum)
            except ProcessLookupError:
                break
            try:
                self.process.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        self.log.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lab")
    a_live_notebook(folder / "live.ipynb")
    shutil.copy(TALK, folder / TALK.name)
    server = JupyterLab(folder)
    try:
        yield server.start()
    finally:
        server.stop()


def enter_slideshow(page, lab, notebook: str, cell: int):
    """Open `notebook` in JupyterLab, select cell `cell`, press Alt-R: RISE's frame, ready."""
    page.goto(lab.url(f"/lab/workspaces/{notebook.split('.')[0]}/tree/{notebook}"))  # a fresh layout
    page.locator(".jp-Notebook .jp-Cell").nth(cell).click(timeout=60_000)
    page.keyboard.press("Escape")               # command mode, where RISE's shortcut lives
    page.keyboard.press("Alt+r")
    frame = page.wait_for_selector(f"iframe[src*='/rise/{notebook}']", timeout=60_000).content_frame()
    frame.wait_for_selector(".reveal.ready", state="attached", timeout=60_000)
    return frame


def on_present_slide(frame) -> str:
    return frame.evaluate(f"document.querySelector('{deck_browser.SLIDES}.present').innerText")


@pytest.mark.timeout(300)
def test_rise_presents_a_notebook_live_and_a_cell_runs_on_its_slide(lab, tmp_path):
    from playwright.sync_api import sync_playwright

    report = deck_browser.DeckReport()
    with sync_playwright() as playwright:
        browser = deck_browser.launch(playwright)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            deck_browser.block_the_network(context, report)
            page = context.new_page()
            frame = enter_slideshow(page, lab, "live.ipynb", cell=1)
            slides = frame.evaluate(f"document.querySelectorAll('{deck_browser.SLIDES}').length")
            assert slides == 3
            assert "print(6 * 7)" in on_present_slide(frame)
            notebook = frame.locator(".jp-Notebook").first
            notebook.press("Shift+Enter")             # run the cell on its slide
            output = frame.wait_for_selector(".jp-OutputArea-output", timeout=60_000)
            assert output.inner_text().strip() == "42"
            page.screenshot(path=str(tmp_path / "rise.png"))
        finally:
            browser.close()
    assert report.left_the_machine == []


@pytest.mark.timeout(300)
def test_the_talk_opens_in_rise_with_every_slide_and_its_title(lab):
    from playwright.sync_api import sync_playwright

    report = deck_browser.DeckReport()
    with sync_playwright() as playwright:
        browser = deck_browser.launch(playwright)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            deck_browser.block_the_network(context, report)
            frame = enter_slideshow(context.new_page(), lab, TALK.name, cell=0)
            slides = frame.evaluate(f"document.querySelectorAll('{deck_browser.SLIDES}').length")
            assert slides == deck_browser.slides_in(nbformat.read(TALK, as_version=4))
            assert on_present_slide(frame).lower().startswith("celery, with redis")
        finally:
            browser.close()
    assert report.left_the_machine == []
