#!/usr/bin/env python3
"""Two trailwarden binaries' `scan` on the same corpus, on one core, in alternating runs.

On a shared machine a single timing moves by a fifth with the load; a ratio of two runs made
back to back moves far less. This runs gzip -dc, binary A and binary B in turn, pinned to one
core, and reports the median of the per-round ratios of CPU time (user + system), which other
processes on the machine disturb less than wall time.

    benches/scan_ab.py OLD_BIN NEW_BIN [--rounds 16] [--corpus target/bench-corpus/corpus]
                       [--new-args "--aws-ip-ranges benches/aws-ip-ranges.json"]

The corpus is the one benches/scan.sh generates. Arguments in --old-args/--new-args are passed
to that binary's scan only (a flag one version does not have).
"""
import argparse
import resource
import shlex
import statistics
import subprocess


def cpu_seconds(cmd):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("old_bin")
    p.add_argument("new_bin")
    p.add_argument("--rounds", type=int, default=16)
    p.add_argument("--corpus", default="target/bench-corpus/corpus")
    p.add_argument("--cpu", default="0")
    p.add_argument("--old-args", default="")
    p.add_argument("--new-args", default="")
    a = p.parse_args()
    pin = ["taskset", "-c", a.cpu]
    cmds = {
        "gzip": ["sh", "-c", f"find {shlex.quote(a.corpus)} -name '*.json.gz' -print0 | xargs -0 {' '.join(pin)} gzip -dc"],
        "old": pin + [a.old_bin, "scan", "--format", "json", *shlex.split(a.old_args), a.corpus],
        "new": pin + [a.new_bin, "scan", "--format", "json", *shlex.split(a.new_args), a.corpus],
    }
    speed, new_x, old_x = [], [], []
    for _ in range(a.rounds):
        t = {name: cpu_seconds(cmd) for name, cmd in cmds.items()}
        speed.append(t["old"] / t["new"])
        new_x.append(t["gzip"] / t["new"])
        old_x.append(t["gzip"] / t["old"])
    print(f"{a.rounds} alternating rounds, CPU time, one core")
    print(f"new speed / old speed: median {statistics.median(speed):.3f} (min {min(speed):.3f}, max {max(speed):.3f})")
    print(f"x gzip -dc: new {statistics.median(new_x):.2f}, old {statistics.median(old_x):.2f}")


if __name__ == "__main__":
    main()
