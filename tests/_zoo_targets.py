"""Stand-ins for one model's scan, run in spawned children by tests/test_zoo.py (importable without torch)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any


def crash_or_hang(job: Any) -> dict[str, Any]:
    """``segv*`` files kill their process with SIGSEGV, ``slow*`` ones hang, the rest report at once."""
    name = Path(job.path).name
    if name.startswith("segv"):
        os.kill(os.getpid(), signal.SIGSEGV)
    if name.startswith("slow"):
        time.sleep(300)
    return {"model": name, "status": "ok", "error": None, "scan_s": 0.0, "methods": {}}
