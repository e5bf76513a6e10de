"""Regenerate docs/errors.md from the cases in tests/test_errors_catalogue.py (which run them).

    python tools/write_errors_doc.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests")]

from test_errors_catalogue import CASES, DOC, observe  # noqa: E402

HEADER = """# What seqkit says when the input is wrong

Each row is a bad input and the exact text a user sees (the CLI prints `error: ...` and exits
with status 1; no traceback). Every row is produced and checked by
`tests/test_errors_catalogue.py`; regenerate this page with `python tools/write_errors_doc.py`.
`<tmp>` stands for the directory the bad input was written to, `<repo>` for the checkout.

| area | bad input | what the user sees |
|---|---|---|
"""


def main() -> None:
    rows = []
    for area, title, fn in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            seen = observe(fn, Path(tmp))
        rows.append(f"| {area} | {title} | `{seen.replace('|', chr(92) + '|').replace(chr(10), '<br>')}` |")
    DOC.write_text(HEADER + "\n".join(rows) + "\n", encoding="utf-8")
    print(f"wrote {DOC} ({len(rows)} rows)")


if __name__ == "__main__":
    main()
