"""Print a command block of README.md that a ``<!-- ci:NAME -->`` marker names.

``.ci/run`` executes the README's own commands through this script, so the README and CI cannot
drift apart: ``python3 tools/readme_blocks.py README.md setup`` prints the fenced block that
follows ``<!-- ci:setup -->``. A missing marker, or a marker not followed by a fenced block,
is an error (exit 1) — CI then fails instead of running something else. Standard library only.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

MARKER = "<!-- ci:{name} -->"
FENCE = re.compile(r"\s*```[a-z]*\n(.*?)\n```", re.DOTALL)


def readme_block(text: str, name: str) -> str:
    """The command in the fenced block right after the ``name`` marker (ValueError if none)."""
    marker = MARKER.format(name=name)
    if text.count(marker) != 1:
        raise ValueError(f"README.md: expected exactly one '{marker}' marker, found {text.count(marker)}")
    match = FENCE.match(text, text.index(marker) + len(marker))
    if match is None or not match.group(1).strip():
        raise ValueError(f"README.md: '{marker}' must be followed by a fenced code block holding the command")
    return match.group(1).strip()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: readme_blocks.py README.md NAME", file=sys.stderr)
        return 2
    try:
        print(readme_block(Path(argv[0]).read_text(encoding="utf-8"), argv[1]))
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
