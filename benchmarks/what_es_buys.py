"""The "What ES buys" page's table and plots, from a bench's folder or from the committed data.

    zo-llm bench --config benchmarks/configs/what-es-buys.toml --model FOLDER --out results/web
    python benchmarks/what_es_buys.py --bench results/web   # keep its table and curves, draw
    python benchmarks/what_es_buys.py                       # redraw from docs/data only

The bench's ``results.md``, ``results.csv`` and ``curves.json`` are copied to
``docs/data/what-es-buys/``; the two plots are drawn from ``curves.json`` into
``docs/img/``, so a later change to the plots redraws without running again.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from zo_llm.bench_report import draw

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "docs" / "data" / "what-es-buys"
IMAGES = ROOT / "docs" / "img"
KEPT = ("results.md", "results.csv", "curves.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bench", type=Path, help="a finished bench folder to take the data from")
    args = parser.parse_args()
    if args.bench is not None:
        DATA.mkdir(parents=True, exist_ok=True)
        for name in KEPT:
            shutil.copy(args.bench / name, DATA / name)
    data = json.loads((DATA / "curves.json").read_text())
    for path in draw(data, IMAGES, prefix="what-es-buys-"):
        print(path.relative_to(ROOT))
    print((DATA / "results.md").read_text(), end="")


if __name__ == "__main__":
    main()
