"""Run every benchmark in one job and print one table: `python bench/run.py`.

Each benchmark is its own script (bench/cli.py, bench/sft.py, bench/data.py, bench/methods.py)
and merges its figures into bench/results.json; every figure is a ratio against a baseline
measured in the same job. Pass --quick for fewer steps and repeats.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from common import BENCH, RESULTS

SUITE = {
    "cli": ["cli.py"],
    "sft": ["sft.py"],
    "data": ["data.py"],
    "methods": ["methods.py"],
}
QUICK = {"sft": ["--steps", "20", "--repeats", "1"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    parser.add_argument("only", nargs="*", choices=[*SUITE, []], help="run only these benchmarks")
    args = parser.parse_args()
    if RESULTS.exists():
        RESULTS.unlink()
    failures = []
    for name, script in SUITE.items():
        if args.only and name not in args.only:
            continue
        extra = QUICK.get(name, []) if args.quick else []
        started = time.perf_counter()
        code = subprocess.call([sys.executable, str(BENCH / script[0]), *extra], cwd=BENCH)
        print(f"[{name}: {time.perf_counter() - started:.0f}s, exit {code}]")
        if code:
            failures.append(name)
    if RESULTS.exists():
        print(f"\nfigures: {RESULTS}")
        print(json.dumps(json.loads(RESULTS.read_text()), indent=1)[:4000])
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
