"""Diff two heap-probe dumps of one process (serving.memory.start_heap_probe, debug only):

    .venv/bin/python benchmarks/heapdiff.py DIR/churn-<pid>-001 DIR/churn-<pid>-004 [--top 15]

prints the allocation sites (by traceback) that grew most between the two tracemalloc
snapshots, and the object types whose live count grew most (gc.get_objects())."""

from __future__ import annotations

import argparse
import json
import tracemalloc
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--frames", type=int, default=12)
    args = ap.parse_args()
    old = tracemalloc.Snapshot.load(f"{args.old}.snap")
    new = tracemalloc.Snapshot.load(f"{args.new}.snap")
    skip = [tracemalloc.Filter(False, tracemalloc.__file__)]
    old, new = old.filter_traces(skip), new.filter_traces(skip)
    total = sum(s.size for s in new.statistics("filename")) - sum(
        s.size for s in old.statistics("filename"))
    print(f"traced memory grew {total / 2**20:+.1f} MB")
    for stat in new.compare_to(old, "traceback")[:args.top]:
        print(f"\n{stat.size_diff / 2**20:+.2f} MB in {stat.count_diff:+,} blocks")
        for line in stat.traceback.format(limit=args.frames, most_recent_first=True):
            print("   ", line)
    a = json.loads(Path(f"{args.old}.types.json").read_text())
    b = json.loads(Path(f"{args.new}.types.json").read_text())
    grew = sorted(((b[k] - a.get(k, 0), k) for k in b), reverse=True)[:args.top]
    print("\nlive objects per type, growth:")
    for d, k in grew:
        print(f"  {d:+9,}  {k}  ({b[k]:,})")


if __name__ == "__main__":
    main()
