"""Where a benchmark's figures go besides the screen: a JSON file, when asked for."""

from __future__ import annotations

import json
from pathlib import Path


def write_results(results: dict, out: str | Path | None, log=print) -> None:
    """Writes ``results`` as indented JSON to ``out`` (nothing when ``out`` is None) and says where."""
    if out:
        Path(out).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        log(f"written: {out}")
