"""How values are written in the report's cells and sentences: numbers to one decimal, signed
changes, mean ± sd, durations, method display names (from the methods table)."""
from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

from s3ft.methods import display_name

from .summary import num

NONE = "—"  # a missing value
LOGPROB_LABELS = {"gold": "gold", "paraphrase": "paraphrase", "self": "own (self)"}  # target kinds


def method_name(method: str) -> str:
    """Display name of a method id (`s3ft` -> `S3FT`); base and unknown ids are shown as they are."""
    return display_name(method)


def f1(x: float | None, nd: int = 1) -> str:
    if x is None:
        return NONE
    s = f"{x:.{nd}f}"
    return "0." + "0" * nd if float(s) == 0 else s


def signed(x: float | None, nd: int = 1) -> str:
    """+3.0 / -3.0 / 0.0 (no sign when it rounds to zero)."""
    if x is None:
        return NONE
    s = f"{x:+.{nd}f}"
    return "0." + "0" * nd if float(s) == 0 else s


def mean_pm(mean: float | None, sd: float | None, signed_: bool = False) -> str:
    fmt = signed if signed_ else f1
    if mean is None:
        return NONE
    return fmt(mean) if sd is None else f"{fmt(mean)} ± {f1(sd)}"


def count(x: float | None) -> str:
    return NONE if x is None else str(int(round(x)))


def ci(interval: Any) -> str:
    """[lo, hi] to one decimal."""
    return f"[{f1(interval[0])}, {f1(interval[1])}]"


def with_ci(value: Any, interval: Any = None, fmt=f1) -> str:
    """A value as `fmt` writes it, then its 95% interval [lo, hi] when there is one: `37.5 [22.5, 52.5]`."""
    if not isinstance(value, (int, float)):
        return NONE
    return fmt(value) + (f" {ci(interval)}" if isinstance(interval, (list, tuple)) and len(interval) == 2 else "")


def plain(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ", ".join(plain(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def compute_time(groups: Any) -> str:
    """Sum of the finished stages' times, with the split by part (shared pass, tuning, each seed,
    the frontier sweep)."""
    if not isinstance(groups, Mapping) or not groups:
        return "not recorded"

    def order(k: str) -> tuple[int, int]:
        return (2, int(k[5:])) if k.startswith("seed-") and k[5:].isdigit() else ({"shared": 0, "tune": 1, "sweep": 4}.get(k, 3), 0)

    def short(s: float) -> str:
        return f"{s / 3600:.2f} h" if s >= 3600 else f"{s / 60:.1f} min"

    secs = {k: num(v) for k, v in groups.items() if num(v) is not None}
    names = {"shared": "shared pass", "tune": "tuning", "sweep": "frontier sweep"}
    parts = ", ".join(f"{names.get(k, k)} {short(v)}" for k, v in sorted(secs.items(), key=lambda kv: order(kv[0])))
    return f"{short(sum(secs.values()))}: {parts}; sum of finished stages over every invocation, each from its last start"


def duration(seconds: Any) -> str:
    s = num(seconds)
    if s is None:
        return "not recorded"
    if s < 120:
        return f"{s:.1f} s"
    minutes = s / 60
    if minutes < 120:
        return f"{s:.1f} s ({minutes:.1f} min)"
    return f"{s:.1f} s ({minutes / 60:.2f} h)"


def table(header: list[str], rows: list[list[str]], signed_cols: Sequence[int] = (), bold_last: bool = False,
          left_cols: int = 1) -> dict[str, Any]:
    """A table for the templates' `table` macro: signed_cols are the columns whose +x / -x are
    coloured in HTML, bold_last marks a total row, the first left_cols columns are text (aligned
    left), the rest numbers."""
    return {"header": header, "rows": rows, "signed_cols": sorted(signed_cols), "bold_last": bold_last,
            "left_cols": left_cols}
