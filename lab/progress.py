"""When progress bars show.

tqdm reads `TQDM_DISABLE` only as the default of `disable`, and every bar here
passes `disable` explicitly (callers turn bars off with `progress=False`), so the
environment variable has to be honoured here for CI to stay quiet."""
from __future__ import annotations

import os


def hidden(progress: bool) -> bool:
    """The `disable` argument of a bar the caller asked for with `progress`."""
    return not progress or os.environ.get("TQDM_DISABLE", "").lower() not in ("", "0", "false")
