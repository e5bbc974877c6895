"""Handouts: every notebook executed and turned into a reveal.js deck that works with no network.

Usage::

    $ make slides                                   # every notebook → slides/NN_*.slides.html
    $ python scripts/slides.py notebooks/00_brown_bag_talk.ipynb     # one deck
    $ python scripts/slides.py --out /media/usb/celery-talk          # straight onto a USB stick

Each notebook runs top to bottom in a fresh kernel (REDIS_URL unset: it starts a private Redis,
as in the tests), and nbconvert's reveal template turns it, outputs and figures included, into
one HTML file. nbconvert's default loads reveal.js, require.js, jQuery, MathJax and the widgets'
renderer from CDNs (unpkg, cdnjs); here every one of them is a file in `<out>/assets/`, taken
from the npm packages pinned below (`npm pack`, cached in .cache/slides/npm/), and pictures are
embedded in the HTML. So the whole `<out>` folder opens from a USB stick on a machine with no
network: open a deck in a browser, arrow keys to move, `S` for the speaker notes.

`tests/test_00_decks.py` opens decks in headless Chromium with the network blocked and checks
that nothing leaves the machine.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
DEFAULT_OUT = ROOT / "slides"                  # git-ignored
NPM_CACHE = ROOT / ".cache" / "slides" / "npm"
TEMPLATE = Path(__file__).resolve().parent / "reveal_offline"

# npm package@version → the files of it a deck needs (folders are copied whole, less source maps).
# reveal.js 4 is what nbconvert's reveal template is written for (dist/, plugin/notes/).
ASSETS = {
    "reveal.js@4.6.1": ["dist", "plugin/notes/notes.js"],
    "jquery@3.7.1": ["dist/jquery.min.js"],
    "requirejs@2.3.7": ["require.js"],
    "@jupyter-widgets/html-manager@1.0.15": ["dist"],   # ipywidgets 8's renderer (progress bars)
    "mathjax@2.7.9": ["MathJax.js", "config", "extensions", "jax/input/TeX",
                      "jax/output/CommonHTML", "jax/element", "fonts/HTML-CSS/TeX/woff",
                      "localization/en"],
}
# Where each package lands under <out>/assets/, and the URLs the decks use (relative to a deck).
FOLDER = {"reveal.js": "reveal.js", "jquery": "jquery", "requirejs": "requirejs",
          "@jupyter-widgets/html-manager": "html-manager", "mathjax": "mathjax"}
EXPORTER_URLS = {
    "reveal_url_prefix": "assets/reveal.js",
    "jquery_url": "assets/jquery/dist/jquery.min.js",
    "require_js_url": "assets/requirejs/require.js",
    "mathjax_url": "assets/mathjax/MathJax.js?config=TeX-AMS_CHTML-full,Safe",
    "widget_renderer_url": "assets/html-manager/dist/embed-amd.js",
}
# A link to a lesson in a notebook's markdown ("02_beat_overlap.ipynb"), rewritten to its deck.
NOTEBOOK_LINK = re.compile(r'href="(?:\.\./notebooks/)?([0-9][0-9][a-z]?_[A-Za-z0-9_]+)\.ipynb')


def package_name(spec: str) -> str:
    return spec.rsplit("@", 1)[0]


def fetch_package(spec: str) -> Path:
    """The unpacked npm package `spec` (name@version), fetched once with `npm pack` into .cache/."""
    unpacked = NPM_CACHE / spec.replace("/", "__")
    if (unpacked / "package.json").exists():
        return unpacked
    if not shutil.which("npm"):
        raise SystemExit("error: npm is needed once, to fetch reveal.js and friends "
                         "(Debian: apt-get install npm)")
    NPM_CACHE.mkdir(parents=True, exist_ok=True)
    packed = subprocess.run(["npm", "pack", "--silent", spec], cwd=NPM_CACHE, capture_output=True,
                            text=True, timeout=300)
    if packed.returncode != 0:
        raise SystemExit(f"error: npm pack {spec} failed: {packed.stderr.strip()[-500:]}")
    tarball = NPM_CACHE / packed.stdout.strip().splitlines()[-1]
    partial = unpacked.with_suffix(".partial")
    shutil.rmtree(partial, ignore_errors=True)
    with tarfile.open(tarball) as archive:
        # "data": no absolute paths, links out or devices (Python 3.10.12+/3.11.4+ have it)
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        archive.extractall(partial, **safe)
    (partial / "package").rename(unpacked)   # npm tarballs hold one folder, package/
    shutil.rmtree(partial)
    tarball.unlink()
    return unpacked


def copy_assets(out: Path) -> None:
    """Every file the decks load, into `out`/assets/ (skipped when already there)."""
    for spec, parts in ASSETS.items():
        source = fetch_package(spec)
        target = out / "assets" / FOLDER[package_name(spec)]
        stamp = target / ".version"
        if stamp.exists() and stamp.read_text() == spec:
            continue
        shutil.rmtree(target, ignore_errors=True)
        for part in parts:
            if (source / part).is_dir():
                shutil.copytree(source / part, target / part,
                                ignore=shutil.ignore_patterns("*.map", "*.esm.js"))
            else:
                (target / part).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source / part, target / part)
        stamp.write_text(spec)


def execute(path: Path, timeout: float = 120):
    """`path` run top to bottom in a fresh kernel (REDIS_URL unset: a private Redis)."""
    import nbclient
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    saved = os.environ.pop("REDIS_URL", None)   # the kernel inherits the environment
    try:
        nbclient.NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(path.parent)}}).execute()
    finally:
        if saved is not None:
            os.environ["REDIS_URL"] = saved
    return notebook


def write_deck(notebook, name: str, out: Path) -> Path:
    """An executed notebook as `out`/<name>.slides.html, loading only files under `out`."""
    from nbconvert import SlidesExporter

    # Theme "white": its fonts are files of reveal.js; "simple" (nbconvert's default here) and
    # others import Google Fonts. reveal_scroll: a slide taller than the screen scrolls.
    exporter = SlidesExporter(template_file=str(TEMPLATE / "index.html.j2"), embed_images=True,
                              reveal_theme="white", reveal_scroll=True, **EXPORTER_URLS)
    exporter.template_paths.insert(0, str(TEMPLATE))  # conf.json: reveal's preprocessors too
    html, _ = exporter.from_notebook_node(notebook, resources={"metadata": {"name": name}})
    html = NOTEBOOK_LINK.sub(r'href="\1.slides.html', html)
    deck = out / f"{name}.slides.html"
    deck.write_text(html, encoding="utf-8")
    return deck


def build(paths: list[Path], out: Path, timeout: float = 120) -> list[Path]:
    """Execute each notebook and write its deck; the decks' paths. Prints a line per notebook;
    one that fails to run is named and skipped, and BuildFailed lists them after the rest."""
    import nbclient

    out.mkdir(parents=True, exist_ok=True)
    copy_assets(out)
    decks, failed = [], []
    for path in paths:
        started = time.monotonic()
        try:
            notebook = execute(path, timeout)
        except (nbclient.exceptions.CellExecutionError, TimeoutError, RuntimeError) as error:
            print(f"{path.name}: failed: {str(error).strip().splitlines()[-1][:200]}", flush=True)
            failed.append(path.name)
            continue
        deck = write_deck(notebook, path.stem, out)
        print(f"{deck}  ({time.monotonic() - started:.0f} s)", flush=True)
        decks.append(deck)
    if failed:
        raise BuildFailed(f"no deck for {', '.join(failed)}: the notebook failed to run")
    return decks


class BuildFailed(RuntimeError):
    """Some notebooks failed to run; the decks of the others were written."""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="notebooks to turn into decks (default: notebooks/*.ipynb)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="folder for the decks and their assets (default: slides/)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds a cell may take")
    options = parser.parse_args(argv)
    paths = options.notebooks or sorted(NOTEBOOKS.glob("[0-9]*.ipynb"))
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        parser.error(f"no such notebook: {', '.join(missing)}")
    if not 0 < options.timeout <= 3600:   # NaN fails this too
        parser.error(f"--timeout must be above 0 and at most 3600 seconds, not {options.timeout}")
    try:
        build([path.resolve() for path in paths], options.out.resolve(), options.timeout)
    except BuildFailed as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
