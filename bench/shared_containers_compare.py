#!/usr/bin/python3
"""Shared containers against multiprocessing.Manager on the same workload, in one run.

Runs mmc_shared_containers_bench (JOBS process workers make atomic counter updates in a
SharedMap over 64 keys, then appends to a SharedVector), then the same with a
multiprocessing.Manager dict (each update under a Manager lock, as `d[k] += 1` alone would lose
updates) and list, and prints rates and ratios. No timing is asserted.

Usage: /usr/bin/python3 bench/shared_containers_compare.py --bench BUILD/bench/mmc_shared_containers_bench
       [--jobs 2] [--updates 200000] [--py-updates 20000]
"""
import argparse
import json
import multiprocessing
import subprocess
import sys
import time


def updater(d, lock, n):
    for i in range(n):
        with lock:
            d[i % 64] = d.get(i % 64, 0) + 1


def appender(items, n):
    for i in range(n):
        items.append(i)


def run_workers(target, args_of, jobs):
    procs = [multiprocessing.Process(target=target, args=args_of()) for _ in range(jobs)]
    start = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    if any(p.exitcode != 0 for p in procs):
        sys.exit("a Python worker failed")
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", required=True, help="path of mmc_shared_containers_bench")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--updates", type=int, default=200_000, help="operations for mmcompute")
    parser.add_argument("--py-updates", type=int, default=20_000,
                        help="operations for multiprocessing.Manager (each a server round trip)")
    args = parser.parse_args()

    out = subprocess.run([args.bench, str(args.jobs), str(args.updates)], check=True,
                         capture_output=True, text=True).stdout
    mmc = json.loads(out)

    per_worker = args.py_updates // args.jobs
    done = per_worker * args.jobs
    with multiprocessing.Manager() as manager:
        d, lock, items = manager.dict(), manager.Lock(), manager.list()
        update_s = run_workers(updater, lambda: (d, lock, per_worker), args.jobs)
        append_s = run_workers(appender, lambda: (items, per_worker), args.jobs)
        if sum(d.values()) != done or len(items) != done:
            sys.exit("Manager lost updates")
    py = {"update_per_s": done / update_s, "append_per_s": done / append_s}

    print(f"{args.jobs} worker processes; mmcompute {mmc['ops']} ops, Manager {done} ops")
    for what, label in (("update_per_s", "atomic counter update"), ("append_per_s", "append")):
        print(f"{label:>22}: mmc::Shared* {mmc[what]:12.0f}/s   Manager {py[what]:10.0f}/s"
              f"   ratio {mmc[what] / py[what]:.1f}x")


if __name__ == "__main__":
    main()
