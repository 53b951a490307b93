"""`python -m benchmarks.device`: the device benchmark alone, each figure printed beside its target."""

from __future__ import annotations

import argparse
import sys

from benchmarks.device import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.device", description=__doc__)
    parser.add_argument("--records", type=int, default=20_000, help="accounts loaded on the server (default 20,000)")
    parser.add_argument("--replay-ops", type=int, default=None, help="ops queued offline (records/10, 50-5,000)")
    parser.add_argument("--crowd", type=int, default=48, help="protocol-level devices besides A and B (default 48)")
    parser.add_argument("--plain-only", action="store_true", help="skip the encrypted variant (app PIN)")
    args = parser.parse_args(argv)
    if args.records < 1 or args.crowd < 1 or (args.replay_ops is not None and args.replay_ops < 1):
        parser.error("--records, --crowd and --replay-ops must be at least 1")
    rows: list[tuple[str, float, str, str]] = []

    def report(name: str, value: float, unit: str, note: str = "") -> None:
        rows.append((name, value, unit, note))
        print(f"  {name}: {value:,.2f} {unit}  {note}", file=sys.stderr, flush=True)

    variants = (False,) if args.plain_only else (False, True)
    run(args.records, report, args.replay_ops, crowd=args.crowd, encrypted=variants)
    width = max(len(name) for name, *_ in rows)
    print(f"\n{'figure':<{width}} {'value':>12}  unit   note (target)")
    for name, value, unit, note in rows:
        print(f"{name:<{width}} {value:>12,.2f}  {unit:<6} {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
