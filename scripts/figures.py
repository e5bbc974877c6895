"""Regenerate the lessons' figures, img/NN_*.png, from real runs (`make figures`).

Usage::

    $ python scripts/figures.py               # every lesson's figures, a few minutes
    $ python scripts/figures.py 02            # one lesson's (`make figures-02`)
    $ python scripts/figures.py 04 --out /tmp/figs

Each lesson's scenes module (`scenes/lesson_NN*.py`) draws its own figures in a `figures(out,
save)` function; this script gives it a Redis and a folder. It always starts its own private
redis-server (a free port, nothing kept), so it never touches a Redis you run, and stops
everything it started, also on Ctrl-C.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCENES = ROOT / "scenes"


def lessons_with_figures() -> dict[str, list[str]]:
    """{"01": ["scenes.lesson_01"], "03": ["scenes.lesson_03_patterns", ...], ...}: the scene
    modules that define figures(), by lesson number (read as text: nothing is imported yet)."""
    found: dict[str, list[str]] = {}
    for path in sorted(SCENES.glob("lesson_*.py")):
        if "\ndef figures(" in path.read_text():
            found.setdefault(path.stem.split("_")[1], []).append(f"scenes.{path.stem}")
    return found


def save(figure, path: Path) -> None:
    """Write `figure` as a PNG at `path`, close it, and say where it went."""
    import matplotlib.pyplot as plt

    figure.savefig(path, dpi=110)
    plt.close(figure)
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}", flush=True)


def main(argv=None) -> int:
    known = lessons_with_figures()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lessons", nargs="*", metavar="NN",
                        help=f"lesson numbers (default: all of {', '.join(known)})")
    parser.add_argument("--out", type=Path, default=ROOT / "img",
                        help="where to write the PNG files (default: img/)")
    options = parser.parse_args(argv)
    unknown = [number for number in options.lessons if number not in known]
    if unknown:
        parser.error(f"no figures for lesson {', '.join(unknown)}; lessons with figures: "
                     f"{', '.join(known)}")
    options.out.mkdir(parents=True, exist_ok=True)

    import matplotlib

    matplotlib.use("Agg")
    from labkit import RedisServer

    with RedisServer() as server:
        os.environ["REDIS_URL"] = server.url   # before tasks.py is imported: it reads REDIS_URL
        for number in options.lessons or known:
            for module in known[number]:
                importlib.import_module(module).figures(options.out, save)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
