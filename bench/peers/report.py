#!/usr/bin/env python3
"""bench/peers/report.py - the tables, the ratios and the plot of a bench/peers run.

    report.py RESULTS.jsonl TABLES.md PLOT_BASENAME

Reads the JSON lines of bench/peers (one per system and scenario, and a
"meta" line), prints Markdown tables (one for 64-byte payloads, one for
4 KiB) and the ratios the issue set as targets, writes the same to
TABLES.md, and draws the round-trip latencies (p50, p99, p99.9 per system,
log scale) with gnuplot into PLOT_BASENAME.png. Exit status 1 when a line
reports an error or gnuplot fails; a missed target is not one.
"""
import json
import os
import subprocess
import sys



def load(path):
    res, meta, errors, systems = {}, {}, [], []
    for line in open(path):
        line = line.strip()
        if not line.startswith("{"):
            continue
        o = json.loads(line)
        if o.get("scenario") == "meta":
            meta = o
            continue
        if o["system"] not in systems:
            systems.append(o["system"])  # rows in the order the run made them
        key = (o["system"], o["scenario"])
        res[key] = o
        if "error" in o:
            errors.append("%s %s: %s" % (o["system"], o["scenario"], o["error"]))
    return meta, res, errors, systems


def us(ns):
    if ns is None:
        return ""
    if ns >= 1e6:
        return "%.2f ms" % (ns / 1e6)
    return "%.1f us" % (ns / 1e3) if ns >= 1e4 else "%.2f us" % (ns / 1e3)


def rate(v):
    if v is None:
        return ""
    if v >= 1e6:
        return "%.2f M/s" % (v / 1e6)
    if v >= 1e3:
        return "%.1f k/s" % (v / 1e3)
    return "%.0f /s" % v


def fig(res, system, scenario, field):
    o = res.get((system, scenario))
    if o is None or "error" in o:
        return None
    return o.get(field)


def table(res, systems, suffix):
    cols = [("rtt p50", "rtt", "p50_ns", us), ("rtt p99", "rtt", "p99_ns", us),
            ("rtt p99.9", "rtt", "p999_ns", us), ("tput 1p1w", "tput_1p1w", "ops_per_s", rate),
            ("tput 4p2w", "tput_4p2w", "ops_per_s", rate), ("dur_1", "dur_1", "ops_per_s", rate),
            ("dur_1 p50", "dur_1", "p50_ns", us), ("dur_50", "dur_50", "ops_per_s", rate),
            ("dur_64", "dur_64", "ops_per_s", rate)]
    lines = ["| system | durable | " + " | ".join(c[0] for c in cols) + " |",
             "|---|---|" + "---|" * len(cols)]
    for s in systems:
        row = [fig(res, s, c[1] + suffix, c[2]) for c in cols]
        if all(v is None for v in row) and not any((s, c[1] + suffix) in res for c in cols):
            continue
        durable = next((o.get("durable") for (sy, _), o in res.items() if sy == s), False)
        cells = []
        for c, v in zip(cols, row):
            if v is None and (s, c[1] + suffix) in res:
                cells.append("error")
            else:
                cells.append(c[3](v))
        lines.append("| `%s` | %s | " % (s, "yes" if durable else "no") + " | ".join(cells) + " |")
    return lines


# (label, numerator, denominator, target): the ratio is numerator/denominator.
TARGETS = [
    ("rtt p50: beanstalkd / taskring", ("beanstalkd", "rtt", "p50_ns"), ("taskring", "rtt", "p50_ns"), 30),
    ("rtt p50: redis / taskring", ("redis", "rtt", "p50_ns"), ("taskring", "rtt", "p50_ns"), 30),
    ("tput_1p1w: taskring / beanstalkd", ("taskring", "tput_1p1w", "ops_per_s"),
     ("beanstalkd", "tput_1p1w", "ops_per_s"), 50),
    ("tput_4p2w: taskring / beanstalkd", ("taskring", "tput_4p2w", "ops_per_s"),
     ("beanstalkd", "tput_4p2w", "ops_per_s"), 50),
    ("dur_64: taskring-durable / beanstalkd-f0 dur_64", ("taskring-durable", "dur_64", "ops_per_s"),
     ("beanstalkd-f0", "dur_64", "ops_per_s"), 15),
    ("dur_64: taskring-durable / redis-always dur_50 (50 clients)", ("taskring-durable", "dur_64", "ops_per_s"),
     ("redis-always", "dur_50", "ops_per_s"), 2),
]


def ratios(res, suffix):
    lines = ["| ratio%s | value | target | |" % (" (4 KiB)" if suffix else " (64 B)"), "|---|---|---|---|"]
    for label, num, den, target in TARGETS:
        a = fig(res, num[0], num[1] + suffix, num[2])
        b = fig(res, den[0], den[1] + suffix, den[2])
        if a is None or b is None or b == 0:
            lines.append("| %s | n/a | >= %g | no figure |" % (label, target))
            continue
        r = a / b
        lines.append("| %s | %.1f | >= %g | %s |" % (label, r, target, "met" if r >= target else "**missed**"))
    return lines


def plot(res, systems, base, meta):
    rows = [(s, fig(res, s, "rtt", "p50_ns"), fig(res, s, "rtt", "p99_ns"), fig(res, s, "rtt", "p999_ns"))
            for s in systems]
    rows = [r for r in rows if r[1] is not None]
    if not rows:
        return None  # a partial run without rtt: nothing to draw
    dat = base + ".dat"
    with open(dat, "w") as f:
        f.write("# system p50_us p99_us p999_us (rtt, 64-byte payload)\n")
        for s, a, b, c in rows:
            f.write('"%s" %.3f %.3f %.3f\n' % (s, a / 1e3, b / 1e3, c / 1e3))
    gp = os.path.join(os.path.dirname(os.path.abspath(__file__)), "latency.gp")
    info = "%s CPUs (%s), kernel %s, %s" % (meta.get("cpus"), meta.get("cpu"), meta.get("kernel"),
                                           meta.get("time"))
    info = info.replace("'", "").replace("\\", "")
    r = subprocess.run(["gnuplot", "-e", "datafile='%s'; outfile='%s.png'; info='%s'" % (dat, base, info), gp],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return "gnuplot failed: " + r.stderr.strip()
    return None


def main():
    if len(sys.argv) != 4:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    meta, res, errors, systems = load(sys.argv[1])
    out = []
    if meta:
        out.append("Run %s on %s: %s CPUs (%s), kernel %s, load %s at the start; %s, %s, SQLite %s; "
                   "data on %s; BENCH_SCALE=%s; taskring %s." %
                   (meta.get("time"), meta.get("host"), meta.get("cpus"), meta.get("cpu"), meta.get("kernel"),
                    meta.get("loadavg_1m"), meta.get("beanstalkd"), meta.get("redis"), meta.get("sqlite"),
                    meta.get("data_fs"), meta.get("bench_scale"), meta.get("commit")))
        out.append("")
    for suffix, title in (("", "64-byte payloads"), ("_4k", "4 KiB payloads")):
        out.append("%s (rtt: one job's round trip; tput: jobs/s, batches of 64; dur_N: acknowledged "
                   "enqueues/s with N producers, each waiting for its own):" % title)
        out.append("")
        out += table(res, systems, suffix)
        out.append("")
        out += ratios(res, suffix)
        out.append("")
    err = plot(res, systems, sys.argv[3], meta)
    if err:
        out.append("plot: " + err)
    elif os.path.exists(sys.argv[3] + ".png"):
        out.append("plot: %s.png" % sys.argv[3])
    if errors:
        out.append("")
        out.append("errors:")
        out += ["  " + e for e in errors]
    text = "\n".join(out) + "\n"
    sys.stdout.write(text)
    with open(sys.argv[2], "w") as f:
        f.write(text)
    # A missed target, or one a partial run has no figures for, is a
    # figure, not a failure.
    return 1 if errors or err else 0


if __name__ == "__main__":
    sys.exit(main())
