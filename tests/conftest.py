"""Suite-wide settings: where the recorded exchange payloads are.

The fixtures live in ``../shared/fixtures/exchanges`` beside the repository (CI clones main
with ``shared/`` next to it). ``P9_FIXTURES`` overrides it; every test module that reads
fixtures resolves them from this variable or the same relative path.
"""

from __future__ import annotations

import os
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]
_DEFAULT = _REPO.parent / "shared" / "fixtures" / "exchanges"
os.environ.setdefault("P9_FIXTURES", str(_DEFAULT))
FIXTURES = Path(os.environ["P9_FIXTURES"])

if not (FIXTURES / "SOURCES.md").is_file():
    raise RuntimeError(
        f"recorded exchange fixtures not found at {FIXTURES}: clone the repository with shared/ beside it "
        "or set P9_FIXTURES"
    )
