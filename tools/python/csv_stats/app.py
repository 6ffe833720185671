"""`csv_stats`: per-column statistics of a CSV text, with only the standard
library (`csv`, `statistics`). Pure: the same text always gives the same
numbers, so toolhost replays repeated calls from its cache."""

import csv
# `statistics.mode` imports heapq on first use; componentize-py keeps only
# the modules imported before its snapshot, so import it here.
import heapq  # noqa: F401
import io
import statistics
from dataclasses import dataclass, field
from typing import Annotated, Optional

import toolhost_sdk as toolhost


@dataclass
class Input:
    """A CSV text whose first row names the columns."""

    csv: Annotated[str, "The CSV text, header row first."]
    columns: Annotated[Optional[list[str]], "Only these columns (default: all)."] = None
    delimiter: Annotated[str, "One character between fields."] = ","


@dataclass
class Column:
    name: str
    count: int
    numeric: int
    distinct: int
    mean: Optional[float] = None
    median: Optional[float] = None
    stdev: Optional[float] = None
    min: Optional[float] = None
    max: Optional[float] = None
    most_common: Optional[str] = None


@dataclass
class Output:
    rows: int
    columns: list[Column] = field(default_factory=list)


def _number(text: str):
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value == value and abs(value) != float("inf") else None


def _column(name: str, cells: list[str]) -> Column:
    present = [c for c in cells if c.strip() != ""]
    numbers = [n for n in (_number(c) for c in present) if n is not None]
    out = Column(name=name, count=len(present), numeric=len(numbers), distinct=len(set(present)))
    if present:
        out.most_common = statistics.mode(present)
    if numbers:
        out.mean = statistics.fmean(numbers)
        out.median = float(statistics.median(numbers))
        out.stdev = statistics.stdev(numbers) if len(numbers) > 1 else 0.0
        out.min, out.max = min(numbers), max(numbers)
    return out


@toolhost.tool(
    name="csv_stats",
    description="Per-column statistics of a CSV text: count, distinct values, the most common one, and for numbers mean, median, stdev, min and max.",
    effect=toolhost.PURE,
)
def run(ctx: toolhost.Context, input: Input) -> Output:
    if len(input.delimiter) != 1:
        raise toolhost.InvalidInput(f"delimiter must be one character, got {input.delimiter!r}")
    try:
        rows = list(csv.reader(io.StringIO(input.csv), delimiter=input.delimiter, strict=True))
    except csv.Error as e:
        raise toolhost.InvalidInput(f"not CSV: {e}") from None
    if not rows:
        raise toolhost.InvalidInput("the CSV is empty: the first row must name the columns")
    header, body = rows[0], rows[1:]
    wanted = input.columns if input.columns is not None else header
    missing = [c for c in wanted if c not in header]
    if missing:
        raise toolhost.InvalidInput(f"no column {missing[0]!r} (columns: {', '.join(header)})")
    columns = []
    for name in wanted:
        at = header.index(name)
        columns.append(_column(name, [r[at] if at < len(r) else "" for r in body]))
    return Output(rows=len(body), columns=columns)


WitWorld = toolhost.world(run)
