#!/usr/bin/env python3
"""bench/meta.py - the "meta" line that opens a benchmark's results.

    meta.py [KEY=VALUE...]

Prints one JSON object: {"scenario":"meta", the time (UTC), host, kernel,
CPU count and model, the 1-minute load average, then each KEY=VALUE given}.
Used by bench/run.sh and bench/peers/run.sh, so that every results file
says where and when it was made.
"""
import json
import os
import platform
import sys
import time

cpu = ""
try:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
except OSError:
    pass
meta = {"scenario": "meta", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": platform.node(), "kernel": platform.release(), "cpus": os.cpu_count(),
        "cpu": cpu, "loadavg_1m": round(os.getloadavg()[0], 2)}
for arg in sys.argv[1:]:
    key, sep, value = arg.partition("=")
    if not sep or not key:
        sys.exit("meta.py: expected KEY=VALUE, got %r" % arg)
    meta[key] = value
print(json.dumps(meta, separators=(",", ":")))
