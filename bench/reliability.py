"""Reliability table: every fault of tests/integration/test_reliability.py, counted end to end.

Runs the same scenarios as the tests (tests/support/faults.py: real simulators, Mosquitto,
VictoriaMetrics and ``gateway run`` processes) one after the other and prints a Markdown table
of readings served, accepted, delivered, dropped (counted), lost and duplicated per fault.
``--readme`` also puts it in README.md between the reliability markers. About 7 minutes with
the default 30 s outages.

    python -m bench.reliability [--outage 30] [--only broker,crash] [--readme]

Reuses the integration tests' process helpers (tests/support): run it from the repository.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from tests.support.faults import SCENARIOS, markdown_table

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- reliability:start -->", "<!-- reliability:end -->"


def replace_table(text: str, table: str) -> str:
    """``text`` with what is between the markers replaced by ``table``."""
    head, start, rest = text.partition(START)
    _, end, tail = rest.partition(END)
    if not start or not end:
        raise ValueError(f"README.md has no {START} ... {END} markers")
    return f"{head}{START}\n{table}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--outage", type=float, default=30.0, help="seconds the broker or database is down"
    )
    parser.add_argument(
        "--only", help=f"comma-separated scenarios to run (default all: {','.join(SCENARIOS)})"
    )
    parser.add_argument("--readme", action="store_true", help="write the table into README.md")
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(SCENARIOS)
    unknown = sorted(set(names) - set(SCENARIOS))
    if unknown:
        parser.error(
            f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}"
        )
    if args.outage <= 0:
        parser.error("--outage must be above 0")
    if args.readme and args.only:
        parser.error("--readme writes the whole table: run every scenario (no --only)")
    tallies = []
    with tempfile.TemporaryDirectory(prefix="reliability-") as workdir:
        for name in names:
            print(f"running {name}...", file=sys.stderr, flush=True)
            tallies.append(SCENARIOS[name](Path(workdir) / name, args.outage))
    table = markdown_table(tallies)
    print(table, flush=True)
    if args.readme:
        README.write_text(replace_table(README.read_text(), table))
        print(f"written to {README}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
