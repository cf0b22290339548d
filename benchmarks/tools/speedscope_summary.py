#!/usr/bin/env python3
"""Summarise a BenchmarkDotNet EventPipe profile (--profiler EP writes *.speedscope.json).

Usage: speedscope_summary.py PROFILE.speedscope.json ROOT [TOP]
Counts only time spent under a frame whose name contains ROOT (for example "Store.Read"), so that set-up, warm-up
bookkeeping and other threads drop out, and prints each frame's inclusive share of that time.
"""
import collections
import json
import sys


def inclusive(path, root):
    data = json.load(open(path))
    frames = [f["name"] for f in data["shared"]["frames"]]
    shares = collections.Counter()
    total = 0.0
    for profile in data["profiles"]:
        if profile["type"] != "evented":
            continue
        stack, last = [], None
        for event in profile["events"]:
            now = event["at"]
            if last is not None and stack:
                names = [frames[i] for i in stack]
                rooted = [k for k, name in enumerate(names) if root in name]
                if rooted:
                    total += now - last
                    for name in set(names[rooted[0]:]):
                        shares[name] += now - last
            last = now
            if event["type"] == "O":
                stack.append(event["frame"])
            else:
                while stack and stack.pop() != event["frame"]:
                    pass
    return shares, total


def main():
    path, root = sys.argv[1], sys.argv[2]
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 40
    shares, total = inclusive(path, root)
    print(f"time under '{root}': {total:.0f} ms (all iterations)")
    for name, value in shares.most_common(top):
        print(f"{100 * value / total:5.1f}%  {name[:160]}")


if __name__ == "__main__":
    main()
