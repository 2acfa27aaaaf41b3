"""Progress lines on stderr ("kafka: ready on 127.0.0.1:19092 (started in 6.1 s)").

Set ``LEADWIRE_INFRA_QUIET=1`` to silence them. Never pass secrets here.
"""

from __future__ import annotations

import os
import sys


def progress(component: str, message: str) -> None:
    if os.environ.get("LEADWIRE_INFRA_QUIET", "") not in ("", "0"):
        return
    print(f"{component}: {message}", file=sys.stderr, flush=True)
