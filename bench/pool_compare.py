#!/usr/bin/python3
"""The pool against joblib and multiprocessing.Pool on the same tiny tasks, in one run.

Runs mmc_pool_bench (the persistent mmc::Pool: map with auto batching and with chunksize 1,
submit per task, one submit+get round trip, copy vs shared transport around max_nbytes), then
the same tiny task (x*x on an int) through joblib.Parallel(batch_size='auto') and
multiprocessing.Pool (apply_async per task, and map), and prints rates and ratios. With
matplotlib, plots the copy/shared crossover to --plot (default: beside the bench binary).

Usage: /usr/bin/python3 bench/pool_compare.py [--bench build-par-rel/bench/mmc_pool_bench]
       [--jobs 2] [--tasks 100000] [--quick] [--plot FILE]
"""
import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import time


def square(x):
    return x * x


def best_rate(fn, n_tasks, repeat):
    best = 0.0
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = max(best, n_tasks / (time.perf_counter() - start))
    return best


def run_mmc(bench, jobs, quick):
    pattern = (f"parallel/(map|submit_many)/backend:process/jobs:{jobs}/|"
               "parallel/submit_get|parallel/transport")
    cmd = [bench, f"--benchmark_filter={pattern}", "--benchmark_format=json"]
    if quick:
        cmd.append("--benchmark_min_time=0.05")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)["benchmarks"]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", default=None, help="path of mmc_pool_bench")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--tasks", type=int, default=100_000, help="tiny tasks for map calls")
    parser.add_argument("--async-tasks", type=int, default=10_000,
                        help="tiny tasks for apply_async (one message each)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--plot", default=None,
                        help="PNG of the crossover (default: beside mmc_pool_bench)")
    args = parser.parse_args()
    bench = args.bench
    if bench is None:
        for candidate in ("build-par-rel", "build-bench", "build"):
            path = os.path.join(root, candidate, "bench", "mmc_pool_bench")
            if os.path.exists(path):
                bench = path
                break
    if bench is None:
        sys.exit("mmc_pool_bench not found: build with -DMMC_BUILD_BENCHMARKS=ON or pass --bench")
    if args.jobs != 2:
        print("note: mmc_pool_bench registers jobs:2 for the process backend", file=sys.stderr)

    if args.plot is None:
        args.plot = os.path.join(os.path.dirname(os.path.abspath(bench)), "pool_crossover.png")
    results = run_mmc(bench, args.jobs, args.quick)
    by_name = {b["name"]: b for b in results}

    def mmc_rate(prefix):
        for name, b in by_name.items():
            if name.startswith(prefix):
                return b["tasks_per_second"]
        return float("nan")

    mmc_auto = mmc_rate(f"parallel/map/backend:process/jobs:{args.jobs}/chunk:auto")
    mmc_chunk1 = mmc_rate(f"parallel/map/backend:process/jobs:{args.jobs}/chunk:1")
    mmc_submit = mmc_rate(f"parallel/submit_many/backend:process/jobs:{args.jobs}")
    mmc_latency = mmc_rate("parallel/submit_get")

    import joblib
    from joblib import Parallel, delayed
    n = args.tasks
    with Parallel(n_jobs=args.jobs, batch_size="auto") as parallel:
        parallel(delayed(square)(i) for i in range(1000))  # start the workers outside timing
        joblib_rate = best_rate(lambda: parallel(delayed(square)(i) for i in range(n)), n,
                                args.repeat)

    ctx = multiprocessing.get_context("fork")
    m = args.async_tasks
    with ctx.Pool(args.jobs) as pool:
        pool.map(square, range(1000))

        def apply_async():
            futures = [pool.apply_async(square, (i,)) for i in range(m)]
            for f in futures:
                f.get()

        def one_round_trip():
            for i in range(1000):
                pool.apply_async(square, (i,)).get()

        async_rate = best_rate(apply_async, m, args.repeat)
        map_rate = best_rate(lambda: pool.map(square, range(n)), n, args.repeat)
        latency_rate = best_rate(one_round_trip, 1000, args.repeat)

    print(f"tiny tasks (x*x), n_jobs={args.jobs}, tasks/s (higher is better); "
          f"joblib {joblib.__version__}, Python {sys.version.split()[0]}")
    rows = [
        ("mmc Pool.map, auto batching", mmc_auto, "joblib Parallel, batch_size='auto'",
         joblib_rate),
        ("mmc Pool.submit per task", mmc_submit, "multiprocessing Pool.apply_async", async_rate),
        ("mmc Pool.map, auto batching", mmc_auto, "multiprocessing Pool.map", map_rate),
        ("mmc Pool.map, chunksize=1", mmc_chunk1, "multiprocessing Pool.apply_async",
         async_rate),
        ("mmc submit().get() round trip", mmc_latency, "apply_async().get() round trip",
         latency_rate),
    ]
    print(f"{'mmcompute':34} {'tasks/s':>12}   {'peer':36} {'tasks/s':>12} {'ratio':>8}")
    for ours, ours_rate, peer, peer_rate in rows:
        print(f"{ours:34} {ours_rate:12,.0f}   {peer:36} {peer_rate:12,.0f} "
              f"{ours_rate / peer_rate:7.1f}x")
    target_joblib = mmc_auto / joblib_rate
    target_async = mmc_submit / async_rate
    print(f"targets: >= 10x joblib auto: {target_joblib:.1f}x "
          f"({'met' if target_joblib >= 10 else 'NOT met'}); "
          f">= 5x apply_async: {target_async:.1f}x "
          f"({'met' if target_async >= 5 else 'NOT met'})")

    copy = {}
    shared = {}
    for name, b in by_name.items():
        if name.startswith("parallel/transport/"):
            size = int(name.split("bytes:")[1].split("/")[0])
            (shared if "/shared/" in name else copy)[size] = b["bytes_per_second"] / 2**30
    print("\ntransport, 16 tasks of `bytes` each (max_nbytes = 1 MiB), GiB/s")
    print(f"{'bytes':>12} {'copy':>8} {'shared':>8}")
    for size in sorted(copy):
        print(f"{size:12,} {copy[size]:8.2f} {shared.get(size, float('nan')):8.2f}")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        sizes = sorted(copy)
        plt.figure(figsize=(6, 4))
        plt.plot(sizes, [copy[s] for s in sizes], "o-", label="copy (socket, segment > 1 MiB)")
        plt.plot(sizes, [shared[s] for s in sizes], "s-", label="SharedArray by reference")
        plt.axvline(2**20, color="gray", linestyle=":", label="max_nbytes = 1 MiB")
        plt.xscale("log")
        plt.xlabel("bytes per task")
        plt.ylabel("GiB/s")
        plt.legend()
        plt.title("mmc::Pool transport: copy vs shared")
        plt.tight_layout()
        plt.savefig(args.plot, dpi=100)
        print(f"plot: {args.plot}")
    except ImportError:
        print("(matplotlib missing: no plot)")


if __name__ == "__main__":
    main()
