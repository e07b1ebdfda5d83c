"""Notebook parameters as the analysis modules take them: papermill passes scalars, so a list
arrives as a comma-separated string."""
from __future__ import annotations

from typing import Sequence

from ..errors import LabError


def parse_list(value: str | Sequence, kind=int, name: str = "") -> list:
    """A list from "a,b,c" (a notebook parameter) or a sequence; empty gives []. `name` is the
    parameter's, for the error."""
    if isinstance(value, str):
        try:
            return [kind(x) for x in value.replace(" ", "").split(",") if x]
        except ValueError:
            what = "integers" if kind is int else "values"
            raise LabError(f"{name + '=' if name else ''}{value!r}: give comma-separated {what}, "
                           "e.g. \"4,8,16\"") from None
    return [kind(x) for x in value]
