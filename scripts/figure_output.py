"""What the figure scripts share: the `--out` folder (img/ by default) and saving a figure there."""
from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def output_folder(argv, description: str) -> Path:
    """Parse `--out FOLDER` (default: img/), create the folder, return it."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", type=Path, default=ROOT / "img",
                        help="where to write the PNG files (default: img/)")
    out = parser.parse_args(argv).out
    out.mkdir(parents=True, exist_ok=True)
    return out


def save(figure, path: Path) -> None:
    """Write `figure` as a PNG at `path`, close it, and say where it went."""
    import matplotlib.pyplot as plt

    figure.savefig(path, dpi=110)
    plt.close(figure)
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
