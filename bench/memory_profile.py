#!/usr/bin/python3
"""How much memory a `mmcompute reduce` process and its forked workers use while they reduce
cubes of several sizes, sampled from /proc/PID/smaps_rollup every few milliseconds.

mmcompute is meant to map the cube, populate the pages just ahead of the scan and release them
behind it, so that each process's anonymous memory (and its resident set) stays flat as the
cube grows; this script measures whether it does. Per size it runs

  mmcompute reduce CUBE --dtype D --shape N,1024,1024 --op mean --axis 1,2 --jobs J
                   --no-cache --quiet -v -o OUT.npy

and, while it runs, lists the process tree (the mmcompute process and every descendant, from
the ppid in /proc/*/stat) and reads each process's smaps_rollup. It keeps, per role (the
parent; each worker, keyed by pid), the peak of every field over the run, the peak of the sum
over the tree, the number of workers seen and the wall time.

Usage (from the repository root):
  /usr/bin/python3 bench/memory_profile.py                     # 2 and 8 GiB u8 cubes
  /usr/bin/python3 bench/memory_profile.py --sizes 0.25,2,8 --dtype f32
  /usr/bin/python3 bench/memory_profile.py --sizes 0.0625,0.25  # a smoke run, a few seconds
Writes results/memory-<date-time>/{memory.md, memory.json, memory.png}. See bench/README.md.
"""
import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIB = 1 << 30
MIB = 1 << 20
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import DTYPES, IMAGE, make_cube, read_through  # noqa: E402  (shared cubes)
# A process can exit (or turn into a zombie) between listing /proc and reading its files.
GONE = (FileNotFoundError, ProcessLookupError, PermissionError)
# smaps_rollup fields in the table (kB in the file); RssFile is derived per sample.
FIELDS = ["Anonymous", "Rss", "RssFile", "Pss", "Private_Dirty", "Swap", "VmHWM"]


def log(msg):
    print(f"[memory] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Cubes: bench/compare.py's own files, names and making (imported), so the two scripts share
# them: make_cube(binary, data_dir, dtype, nbytes) and read_through(path).

# ---------------------------------------------------------------------------------------------
# /proc.

class ProcessTree:
    """The pids of root and all its descendants, from the ppid field of /proc/*/stat
    (/proc/PID/task/*/children needs CONFIG_PROC_CHILDREN, which not every kernel has).
    Each pid's stat is read once and its ppid kept while the pid is listed: a pid that leaves
    the tree by reparenting is missed, and pids are reused only after pid_max wraps. Reading
    every stat in every sample would cost ~2 ms of CPU per sample here."""

    def __init__(self, root):
        self.root = root
        self.ppid = {}

    def pids(self):
        listed = set()
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            pid = int(name)
            listed.add(pid)
            if pid in self.ppid:
                continue
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    stat = f.read()
            except GONE:
                continue
            fields = stat[stat.rfind(b")") + 2:].split()  # the command name may hold spaces
            if len(fields) >= 2:
                self.ppid[pid] = int(fields[1])
        for pid in [p for p in self.ppid if p not in listed]:  # gone
            del self.ppid[pid]
        children = {}
        for pid, parent in self.ppid.items():
            children.setdefault(parent, []).append(pid)
        tree, todo = [], [self.root]
        while todo:
            pid = todo.pop()
            tree.append(pid)
            todo.extend(children.get(pid, ()))
        return tree


def smaps_rollup(pid):
    """{field: kB} of /proc/PID/smaps_rollup; None if the process is gone or a zombie (whose
    file is empty)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            text = f.read().decode()
    except GONE:
        return None
    values = {}
    for line in text.splitlines()[1:]:  # the first line is the [rollup] address range
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[key] = int(parts[0])
    if "Rss" not in values:
        return None
    values["RssFile"] = values["Rss"] - values.get("Anonymous", 0)  # file-backed and shmem
    try:  # the kernel's own high-water Rss of this process, which catches peaks between samples
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    values["VmHWM"] = int(line.split()[1])
                    break
    except GONE:
        pass
    return values


def peak_into(peaks, values):
    for k, v in values.items():
        if v > peaks.get(k, -1):
            peaks[k] = v


# ---------------------------------------------------------------------------------------------
# One profiled run.

VERBOSE_WORKERS = re.compile(r"(\d+) workers?, (\d+) tasks?")
VERBOSE_TIME = re.compile(r"in ([0-9.]+) s = ([0-9.]+) GB/s")


def sample_until_exit(proc, tree, interval, t0, next_tick, peaks, tree_peak, series, seen):
    """Samples the tree every `interval` s until its root exits; returns (wait status, number
    of samples, most workers alive in one sample)."""
    root = proc.pid
    most_alive = 0
    n_samples = 0
    while True:
        pid, status, _ = os.wait4(root, os.WNOHANG)
        if pid:
            return status, n_samples, most_alive
        t = time.perf_counter() - t0
        total, point, alive = {}, {}, 0
        for p in tree.pids():
            v = smaps_rollup(p)
            if p != root:
                seen.add(p)
            if v is None:
                continue
            alive += p != root
            peak_into(peaks.setdefault(p, {}), v)
            for k, x in v.items():
                total[k] = total.get(k, 0) + x
            point[str(p)] = [v["Rss"], v.get("Anonymous", 0), v.get("Pss", 0)]
        if point:
            n_samples += 1
            peak_into(tree_peak, total)
            series.append([round(t, 4), point])
            most_alive = max(most_alive, alive)
        next_tick += interval
        time.sleep(max(0.0, next_tick - time.perf_counter()))


def profile_run(cmd, interval, err_path):
    """Runs cmd, sampling its process tree every `interval` seconds until it exits."""
    peaks = {}          # pid -> {field: peak kB}
    tree_peak = {}      # field -> peak over samples of the sum over the tree
    series = []         # [t s, {pid: [Rss, Anonymous, Pss]}] per sample, for the plot
    seen = set()        # every descendant pid listed, sampled or not
    with open(err_path, "wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        root = proc.pid
        tree = ProcessTree(root)
        next_tick = t0
        try:
            status, n_samples, most_alive = sample_until_exit(
                proc, tree, interval, t0, next_tick, peaks, tree_peak, series, seen)
        except BaseException:
            # Interrupted (Ctrl-C) or failed: mmcompute stops its workers on SIGTERM; never
            # leave it running behind us.
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4, not by Popen
    with open(err_path, errors="replace") as f:
        stderr = f.read()
    os.unlink(err_path)
    workers = {p: v for p, v in peaks.items() if p != root}
    worker_max = {}
    for v in workers.values():
        peak_into(worker_max, v)
    m_workers, m_time = VERBOSE_WORKERS.search(stderr), VERBOSE_TIME.search(stderr)
    return {
        "exit_code": proc.returncode, "root_pid": root, "wall_s": wall, "samples": n_samples,
        "sample_period_ms": 1e3 * (series[-1][0] - series[0][0]) / (len(series) - 1)
                            if len(series) > 1 else None,
        "parent": peaks.get(root, {}), "worker_max": worker_max,
        "workers": {str(p): v for p, v in workers.items()}, "tree_sum": tree_peak,
        "workers_seen": len(seen), "workers_sampled": len(workers),
        "workers_alive_max": most_alive,
        "workers_reported": int(m_workers.group(1)) if m_workers else None,
        "tasks_reported": int(m_workers.group(2)) if m_workers else None,
        "reduce_s": float(m_time.group(1)) if m_time else None,
        "stderr": stderr.strip(), "series": series,
    }


# ---------------------------------------------------------------------------------------------
# Reports.

def mib(kb):
    return "–" if kb is None else f"{kb / 1024:.1f}"


def flat_verdicts(runs, margin_mib, margin_frac):
    """Per role: is peak Anonymous at the largest size within max(margin_mib, margin_frac of
    the smallest size's) of the smallest size's? A verdict to read, not an assertion."""
    ok = sorted((r for r in runs if r["exit_code"] == 0), key=lambda r: r["nbytes"])
    if len(ok) < 2 or ok[0]["nbytes"] == ok[-1]["nbytes"]:
        return ["Flatness: needs two sizes that ran."]
    small, large = ok[0], ok[-1]
    lines = []
    for role, label in (("parent", "parent"), ("worker_max", "worker max"),
                        ("tree_sum", "tree sum")):
        a = small[role].get("Anonymous")
        b = large[role].get("Anonymous")
        if a is None or b is None:
            lines.append(f"- {label}: not sampled at both sizes")
            continue
        allowed = max(margin_mib * 1024, margin_frac * a)
        flat = b - a <= allowed
        lines.append(f"- {label}: peak Anonymous {a / 1024:.1f} MiB at {small['size_gib']:g} GiB, "
                     f"{b / 1024:.1f} MiB at {large['size_gib']:g} GiB ({(b - a) / 1024:+.1f} MiB, "
                     f"allowed {allowed / 1024:.1f}): **{'flat' if flat else 'NOT flat'}**")
    return [f"Flatness (peak Anonymous, largest against smallest cube; margin "
            f"max({margin_mib:g} MiB, {margin_frac:.0%})):", ""] + lines


def write_report(path, meta, runs, verdict):
    lines = [f"# mmcompute memory by process ({meta['started']})", ""]
    lines.append(f"Command: `{meta['command']}`  ")
    lines.append(f"Machine: {meta['cpu']}, {meta['cpus']} CPUs, Linux {meta['kernel']}, "
                 f"{meta['mem_total_gib']:.1f} GiB RAM; mmcompute {meta['mmcompute']}  ")
    lines.append(f"Load average at start {meta['load_start']}, at end {meta['load_end']}; "
                 f"sampled every {meta['interval_ms']:g} ms; cube read into the page cache "
                 f"before each run: {'no' if meta['no_warm'] else 'yes'}.")
    lines.append("")
    lines.append(f"`{meta['reduce_args']}`, peak of each field over the run, MiB "
                 "(worker max: the largest peak of any worker, field by field; tree sum: the "
                 "peak over samples of the sum over the parent and its workers):")
    lines.append("")
    lines.append("| dtype | GiB | role | procs | Anonymous | Rss | RssFile | Pss | "
                 "Private_Dirty | Swap | VmHWM |")
    lines.append("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in runs:
        for role, label, procs in (("parent", "parent", 1),
                                   ("worker_max", "worker max", r["workers_sampled"]),
                                   ("tree_sum", "tree sum", 1 + r["workers_sampled"])):
            v = dict(r[role])
            if role == "tree_sum":
                v.pop("VmHWM", None)  # a sum of high-water marks reached at different times
            lines.append(f"| {r['dtype']} | {r['size_gib']:g} | {label} | {procs} | "
                         + " | ".join(mib(v.get(k)) for k in FIELDS) + " |")
    lines.append("")
    lines.append("| dtype | GiB | shape | exit | wall s | reduce s (-v) | workers seen / alive "
                 "at once / reported | samples | ms between samples |")
    lines.append("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in runs:
        status = str(r["exit_code"]) if r["exit_code"] == 0 and r["output_ok"] else \
            f"**{r['exit_code']}{'' if r['output_ok'] else ', no output'}**"
        lines.append(f"| {r['dtype']} | {r['size_gib']:g} | {'x'.join(map(str, r['shape']))} | "
                     f"{status} | {r['wall_s']:.3f} | "
                     f"{'–' if r['reduce_s'] is None else format(r['reduce_s'], '.3f')} | "
                     f"{r['workers_seen']} / {r['workers_alive_max']} / "
                     f"{'–' if r['workers_reported'] is None else r['workers_reported']} | "
                     f"{r['samples']} | "
                     f"{'–' if r['sample_period_ms'] is None else format(r['sample_period_ms'], '.1f')} |")
    lines.append("")
    lines += verdict
    lines.append("")
    lines.append("Anonymous: private anonymous pages (heap, stacks, copy-on-write copies). "
                 "Rss: every resident page mapped, the cube's page-cache pages included. "
                 "RssFile: Rss − Anonymous (the mapped cube, the binary and its libraries, "
                 "shared segments). Pss: Rss with each shared page divided among the processes "
                 "that map it. Private_Dirty: pages this process wrote that no other process "
                 "shares. VmHWM (/proc/PID/status): the kernel's own high-water Rss of the "
                 "process, which also catches peaks between samples (a worker's starts from its "
                 "parent's at fork). A process that lives "
                 "less than the interval may be missed entirely.")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return "\n".join(lines) + "\n"


def plot(path, runs):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("no matplotlib: no plot")
        return False
    fig, axes = plt.subplots(1, len(runs), figsize=(5 * len(runs), 4), squeeze=False)
    for ax, r in zip(axes[0], runs):
        root = str(r["root_pid"])
        pids = sorted({p for _, pt in r["series"] for p in pt}, key=lambda p: (p != root, int(p)))
        for i, p in enumerate(pids):
            ts = [t for t, pt in r["series"] if p in pt]
            rss = [pt[p][0] / 1024 for _, pt in r["series"] if p in pt]
            anon = [pt[p][1] / 1024 for _, pt in r["series"] if p in pt]
            name = "parent" if p == root else "workers"
            color = "C0" if p == root else "C1"
            first = p == root or i == 1
            ax.plot(ts, rss, color=color, lw=1, label=f"{name} Rss" if first else None)
            ax.plot(ts, anon, color=color, lw=1, ls="--",
                    label=f"{name} Anonymous" if first else None)
        ax.set(title=f"{r['dtype']} {r['size_gib']:g} GiB", xlabel="s", ylabel="MiB",
               ylim=(0, None))
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# ---------------------------------------------------------------------------------------------

def machine_info(binary):
    cpu = platform.processor() or "?"
    mem = 0
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
        with open("/proc/meminfo") as f:
            mem = int(next(line.split()[1] for line in f if line.startswith("MemTotal"))) * 1024
    except (OSError, StopIteration, ValueError):
        pass
    try:
        version = subprocess.run([binary, "--version"], capture_output=True,
                                 text=True).stdout.strip()
    except OSError:
        version = "?"
    return {"cpu": cpu, "cpus": os.cpu_count(), "kernel": platform.release(),
            "mem_total_gib": mem / GIB, "mmcompute": version or "?",
            "python": platform.python_version(), "numpy": np.__version__}


def load_average():
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="2,8", help="cube sizes in GiB (default 2,8)")
    ap.add_argument("--dtype", default="u8", help="one of " + ",".join(DTYPES) + " (default u8)")
    ap.add_argument("--jobs", type=int, default=2, help="mmcompute --jobs (default 2)")
    ap.add_argument("--op", default="mean", help="mmcompute --op (default mean)")
    ap.add_argument("--axis", default="1,2",
                    help="mmcompute --axis (default 1,2: one value per image; 0: one image)")
    ap.add_argument("--mmcompute", default=os.path.join(REPO, "build/tools/mmcompute"),
                    help="the CLI (default build/tools/mmcompute)")
    ap.add_argument("--data-dir", default=os.environ.get("MMC_BENCH_DATA", "/var/tmp/mmc-bench"),
                    help="where cubes are made and kept, shared with compare.py (default "
                         "/var/tmp/mmc-bench or $MMC_BENCH_DATA)")
    ap.add_argument("--results", default=os.path.join(REPO, "results"),
                    help="parent of the results/memory-<date-time>/ folder")
    ap.add_argument("--interval-ms", type=float, default=5.0,
                    help="sampling interval in ms (default 5)")
    ap.add_argument("--no-warm", action="store_true",
                    help="do not read the cube into the page cache before each run")
    ap.add_argument("--flat-mib", type=float, default=8.0,
                    help="flatness margin in MiB (default 8; the larger of this and --flat-frac)")
    ap.add_argument("--flat-frac", type=float, default=0.10,
                    help="flatness margin as a fraction of the smallest cube's peak (default 0.10)")
    ap.add_argument("--no-plot", action="store_true", help="skip memory.png")
    ap.add_argument("--require-workers", action="store_true",
                    help="fail unless every run's workers were sampled (the CTest smoke run "
                         "slows its tasks with MMC_DEBUG_TASK_DELAY_MS so that they are)")
    args = ap.parse_args()
    try:
        args.size_list = [float(s) for s in args.sizes.split(",") if s]
    except ValueError:
        ap.error(f"--sizes: not a list of numbers: {args.sizes!r}")
    if not args.size_list or min(args.size_list) <= 0:
        ap.error("--sizes: give one or more positive sizes in GiB")
    if args.dtype not in DTYPES:
        ap.error(f"--dtype: unknown dtype {args.dtype!r} (choose from {', '.join(DTYPES)})")
    if args.interval_ms <= 0:
        ap.error("--interval-ms must be positive")
    return args


def main():
    args = parse_args()
    binary = args.mmcompute
    if not os.path.exists(binary):
        sys.exit(f"memory_profile.py: no mmcompute binary at {binary}; build it or pass "
                 "--mmcompute")
    started = datetime.datetime.now()
    folder = os.path.join(args.results, "memory-" + started.strftime("%Y-%m-%d_%H-%M-%S"))
    base, n = folder, 1
    while os.path.exists(folder):  # two runs in one second
        n += 1
        folder = f"{base}-{n}"
    os.makedirs(folder)
    os.makedirs(args.data_dir, exist_ok=True)
    reduce_args = (f"mmcompute reduce CUBE --dtype {args.dtype} --shape N,{IMAGE[0]},{IMAGE[1]} "
                   f"--op {args.op} --axis {args.axis} --jobs {args.jobs} --no-cache --quiet "
                   "-v -o OUT.npy")
    meta = {"started": started.isoformat(timespec="seconds"),
            "command": " ".join([sys.executable] + sys.argv), "reduce_args": reduce_args,
            "sizes_gib": args.size_list, "dtype": args.dtype, "jobs": args.jobs, "op": args.op,
            "axis": args.axis, "interval_ms": args.interval_ms, "no_warm": args.no_warm,
            "data_dir": args.data_dir, "load_start": load_average(), **machine_info(binary)}
    log(f"results in {folder}; load average {meta['load_start']}")

    runs = []
    for size in args.size_list:
        cube = make_cube(binary, args.data_dir, args.dtype, int(size * GIB))
        out = os.path.join(folder, f"out_{os.getpid()}.npy")
        cmd = [binary, "reduce", cube["path"], "--dtype", args.dtype, "--shape",
               ",".join(map(str, cube["shape"])), "--op", args.op, "--axis", args.axis,
               "--jobs", str(args.jobs), "--no-cache", "--quiet", "-v", "-o", out]
        if not args.no_warm:
            read_through(cube["path"])
        log(f"{args.dtype} {cube['nbytes'] / GIB:g} GiB: {' '.join(cmd)}")
        if os.path.exists(out):
            os.unlink(out)
        r = profile_run(cmd, args.interval_ms / 1e3, out + ".stderr")
        output_ok = os.path.exists(out)
        out_shape = None
        if output_ok:
            try:
                out_shape = list(np.load(out, mmap_mode="r").shape)
            except (OSError, ValueError) as e:
                output_ok = False
                log(f"cannot read {out}: {e}")
            os.unlink(out)
        r.update({"size_gib": cube["nbytes"] / GIB, "dtype": args.dtype,
                  "shape": list(cube["shape"]), "nbytes": cube["nbytes"], "cube": cube["path"],
                  "command": " ".join(cmd), "output_ok": output_ok, "output_shape": out_shape})
        runs.append(r)
        if r["exit_code"] != 0 or not output_ok:
            log(f"FAILED: exit code {r['exit_code']}, output {'written' if output_ok else 'missing'}"
                + (f": {r['stderr']}" if r["stderr"] else ""))
        log(f"  {r['wall_s']:.3f} s, {r['samples']} samples, {r['workers_seen']} workers; peak "
            f"Anonymous parent {mib(r['parent'].get('Anonymous'))} MiB, worker max "
            f"{mib(r['worker_max'].get('Anonymous'))} MiB")

    meta["load_end"] = load_average()
    verdict = flat_verdicts(runs, args.flat_mib, args.flat_frac)
    text = write_report(os.path.join(folder, "memory.md"), meta, runs, verdict)
    with open(os.path.join(folder, "memory.json"), "w") as f:
        json.dump({"meta": meta, "runs": runs,
                   "verdict": [line for line in verdict if line]}, f, indent=1)
    plotted = not args.no_plot and plot(os.path.join(folder, "memory.png"), runs)
    print(text)
    log(f"wrote {folder}/memory.md, memory.json" + (", memory.png" if plotted else ""))
    if any(r["exit_code"] != 0 or not r["output_ok"] for r in runs):
        sys.exit(1)
    if args.require_workers:
        unsampled = [r for r in runs if r["workers_sampled"] == 0 or
                     not r["worker_max"].get("Anonymous")]
        if unsampled:
            log(f"FAILED: no worker's smaps sampled in {len(unsampled)} run(s)")
            sys.exit(1)


if __name__ == "__main__":
    main()
