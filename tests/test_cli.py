#!/usr/bin/env python3
"""test_cli.py - the command-line tool, taskring(1), against its contract.

Runs $BUILD/taskring (BUILD from the environment, default "build") against
stores served by worker processes ($BUILD/tests/cli_worker, built from
tests/cli_worker.c: tasks echo, fail, hold and slow on the queues default,
q1 and q2). Every store is named "/taskring-test-$TR_TEST_RUN-cli-..." so
tests/run.sh removes what a crashed run leaves; each test removes its own
stores, log directories (under $BUILD/test-cli-*, never a tmpfs) and
processes itself.

Exit status as the C test programs': 0 passed, 1 failed. Nothing here is
skipped: a missing binary, tmux or python3-prometheus-client is a failure
(run `make deps` and build the tool and the worker).

Nothing asserts a duration: every wait for a change polls with a deadline
(DEADLINE seconds), and every command runs with a timeout so a hang fails.
"""
import calendar
import itertools
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.chdir(ROOT)
BUILD = os.environ.get("BUILD") or "build"
TOOL = os.path.join(ROOT, BUILD, "taskring")
WORKER = os.path.join(ROOT, BUILD, "tests", "cli_worker")
RUN = os.environ.get("TR_TEST_RUN") or str(os.getpid())
CMD_TIMEOUT = 30   # seconds any one command may take
DEADLINE = 20      # seconds a polled condition may take to come true
UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# A well-formed id that names no job of any test store.
NO_SUCH_ID = "01890000-0000-7000-8000-000000000000"
STATES = ("pending", "running", "complete", "failed", "dead", "cancelled")
COUNTERS = ("enqueued", "started", "completed", "failed", "dead", "cancelled", "retried")
# Small stores: quick to make, little of /dev/shm.
SMALL = ["--slots", "256", "--max-payload", "64K", "--arena", "4M"]
COMMANDS = ("ls", "create", "rm", "info", "jobs", "show", "enqueue", "wait", "cancel", "retry",
            "replay", "purge", "pause", "resume", "reap", "top", "metrics", "log", "demo")
MAKE_DEPS = "install it with `make deps` (Debian packages tmux and python3-prometheus-client)"

_seq = itertools.count()


def prometheus_parser():
    """text_string_to_metric_families, or None. Debian's package lives in
    /usr/lib/python3/dist-packages, which a python3 other than Debian's
    (pyenv, a venv) does not search: look there too."""
    try:
        from prometheus_client.parser import text_string_to_metric_families
        return text_string_to_metric_families
    except ImportError:
        pass
    for d in ("/usr/lib/python3/dist-packages",):
        if os.path.isdir(os.path.join(d, "prometheus_client")) and d not in sys.path:
            sys.path.append(d)
    try:
        from prometheus_client.parser import text_string_to_metric_families
        return text_string_to_metric_families
    except ImportError:
        return None


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class Result:
    """One command's outcome: rc, stdout (bytes and text) and stderr (text)."""

    def __init__(self, args, cp):
        self.args = args
        self.rc = cp.returncode
        self.raw = cp.stdout
        self.out = cp.stdout.decode("utf-8", "replace")
        self.err = cp.stderr.decode("utf-8", "replace")

    def __str__(self):
        return "`taskring %s`: exit %d\n--- stdout:\n%s\n--- stderr:\n%s" % (
            " ".join(self.args), self.rc, self.out[-3000:], self.err[-3000:])


class CliTest(unittest.TestCase):
    maxDiff = None

    def setUp(self):
        self.stores = []     # names and paths to remove
        self.dirs = []       # directories to remove
        self.workers = []    # Popen
        self.tmux_socks = [] # tmux servers to kill

    def tearDown(self):
        for sock in self.tmux_socks:
            subprocess.run(["tmux", "-L", sock, "kill-server"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=CMD_TIMEOUT)
            # A server that ended by itself leaves its socket file behind.
            tmpdir = os.environ.get("TMUX_TMPDIR") or "/tmp"
            try:
                os.unlink(os.path.join(tmpdir, "tmux-%d" % os.getuid(), sock))
            except OSError:
                pass
        for w in self.workers:
            if w.poll() is None:
                w.send_signal(signal.SIGTERM)
        for w in self.workers:
            try:
                w.wait(timeout=15)
            except subprocess.TimeoutExpired:
                w.kill()
                w.wait()
            if w.stdout:
                w.stdout.close()
        for name in self.stores:
            path = "/dev/shm" + name if name.startswith("/") and name.count("/") == 1 else name
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)

    # ---- running the tool --------------------------------------------------

    def tr(self, *args, input=None, timeout=CMD_TIMEOUT):
        args = [str(a) for a in args]
        try:
            cp = subprocess.run([TOOL] + args, input=input if input is not None else b"",
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
        except subprocess.TimeoutExpired:
            self.fail("`taskring %s` did not end within %d s" % (" ".join(args), timeout))
        return Result(args, cp)

    def ok(self, *args, **kw):
        """Run; assert exit 0; return the Result."""
        r = self.tr(*args, **kw)
        self.assertEqual(r.rc, 0, str(r))
        return r

    def expect(self, rc, *args, **kw):
        r = self.tr(*args, **kw)
        self.assertEqual(r.rc, rc, "expected exit %d from %s" % (rc, r))
        return r

    def js(self, *args, rc=0, **kw):
        """Run with --json; assert the exit status; return the parsed document."""
        r = self.tr(*args, "--json", **kw)
        self.assertEqual(r.rc, rc, str(r))
        return self.parse(r)

    def parse(self, r):
        try:
            return json.loads(r.raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            self.fail("not JSON (%s) from %s" % (e, r))

    # ---- stores, workers, jobs ---------------------------------------------

    def store_name(self, tag):
        name = "/taskring-test-%s-cli-%s-%d-%d" % (RUN, tag, os.getpid(), next(_seq))
        self.stores.append(name)
        try:
            os.unlink("/dev/shm" + name)
        except FileNotFoundError:
            pass
        return name

    def scratch_dir(self, tag):
        """A fresh directory under $BUILD (a real disk, not a tmpfs)."""
        d = os.path.join(ROOT, BUILD, "test-cli-%s-%s-%d-%d" % (tag, RUN, os.getpid(), next(_seq)))
        shutil.rmtree(d, ignore_errors=True)
        self.dirs.append(d)
        return d

    def new_store(self, tag, *extra):
        name = self.store_name(tag)
        self.ok("create", name, *(list(extra) or SMALL))
        return name

    def start_worker(self, store, threads=2):
        p = subprocess.Popen([WORKER, store, str(threads)], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, bufsize=0)
        self.workers.append(p)
        got = b""
        end = time.monotonic() + DEADLINE
        while not got.endswith(b"\n"):
            left = end - time.monotonic()
            if left <= 0:
                self.fail("cli_worker %s did not say ready within %d s (got %r)" % (store, DEADLINE, got))
            rd, _, _ = select.select([p.stdout], [], [], left)
            if rd:
                b = p.stdout.read(1)
                if not b:
                    p.wait(timeout=CMD_TIMEOUT)
                    self.fail("cli_worker %s exited with %s before it was ready" % (store, p.returncode))
                got += b
        self.assertEqual(got, b"ready\n")
        return p

    def enqueue(self, store, task, *args, **kw):
        r = self.ok("enqueue", store, task, *args, **kw)
        jid = r.out.strip()
        self.assertRegex(jid, "^" + UUID_RE.pattern + "$", "enqueue printed no id alone: %s" % r)
        return jid

    def show(self, store, jid):
        j = self.js("show", store, jid)
        self.assertIsInstance(j, dict)
        self.assertEqual(j["id"], jid)
        return j

    def poll(self, fn, what, deadline=DEADLINE):
        """Call fn() until it returns something true; fail after deadline s."""
        end = time.monotonic() + deadline
        last = None
        while True:
            last = fn()
            if last:
                return last
            if time.monotonic() > end:
                self.fail("%s: not within %d s (last: %r)" % (what, deadline, last))
            time.sleep(0.02)

    def wait_status(self, store, jid, status):
        box = {}

        def check():
            box["j"] = self.show(store, jid)
            return box["j"]["status"] == status
        self.poll(check, "job %s to be %s" % (jid, status))
        return box["j"]

    def wait_running(self, store, jid, progress=None):
        def check():
            j = self.show(store, jid)
            if j["status"] == "running" and (progress is None or j["progress"] == progress):
                return j
            return None
        return self.poll(check, "job %s to run (progress %s)" % (jid, progress))

    def queue_of(self, info, name):
        for q in info["queues"]:
            if q["name"] == name:
                return q
        self.fail("queue %s not in info --json: %r" % (name, [q["name"] for q in info["queues"]]))


# ------------------------------------------------------------------------------
# create, ls, rm
# ------------------------------------------------------------------------------

class TestStores(CliTest):

    def test_create_sizing_json(self):
        name = self.store_name("create")
        st = self.js("create", name, "--slots", "128", "--max-payload", "4K", "--arena", "1M",
                     "--queues", "8", "--tasks", "32")
        self.assertIsInstance(st, dict)
        keys = ("name", "slots", "max_payload", "queues", "tasks", "arena_bytes", "arena_used", "region_bytes",
                "created_at")
        self.assertEqual(sorted(k for k in keys if k not in st), [],
                         "keys of info --json's \"store\" missing from create --json: %r" % st)
        self.assertEqual(st["name"], name)
        self.assertEqual(st["slots"], 128)
        self.assertEqual(st["max_payload"], 4096)
        self.assertEqual(st["arena_bytes"], 1 << 20)
        self.assertEqual(st["queues"], 8)
        self.assertEqual(st["tasks"], 32)
        for k in ("arena_used", "region_bytes", "created_at"):
            self.assertTrue(is_number(st[k]), "%s: %r" % (k, st[k]))
        self.assertGreater(st["region_bytes"], 1 << 20)
        now_ms = time.time() * 1000
        self.assertLess(abs(st["created_at"] - now_ms), 3600 * 1000, "created_at is ms since the epoch")
        self.assertEqual(os.stat("/dev/shm" + name).st_mode & 0o777, 0o600)

        # The same as info --json's "store" member.
        info = self.js("info", name, "--interval", "0")
        self.assertEqual(info["store"], st)

        # A second create fails: the store exists.
        r = self.expect(1, "create", name, "--slots", "128")
        self.assertIn("File exists", r.err)
        self.assertIn(name, r.err)

    def test_create_text_and_group(self):
        name = self.store_name("group")
        r = self.ok("create", name, "--slots", "64", "--max-payload", "2K", "--arena", "256K", "--group")
        self.assertIn("64", r.out, "create prints its sizing")
        self.assertEqual(os.stat("/dev/shm" + name).st_mode & 0o777, 0o660)
        self.assertEqual(self.js("info", name, "--interval", "0")["store"]["slots"], 64)

    def test_create_bad_sizes(self):
        name = self.store_name("badsize")
        for args in (["--slots", "abc"], ["--max-payload", "1X"], ["--arena", "-5"], ["--slots"]):
            r = self.expect(2, "create", name, *args)
            self.assertIn("usage", r.err.lower(), str(r))
            self.assertFalse(os.path.exists("/dev/shm" + name), "a failed create made %s" % name)
        # Out of the library's range: the library refuses (1) or the tool (2).
        r = self.tr("create", name, "--slots", "1")
        self.assertIn(r.rc, (1, 2), str(r))
        self.assertTrue(r.err.strip(), str(r))
        self.assertFalse(os.path.exists("/dev/shm" + name))

    def test_ls_and_rm(self):
        name = self.new_store("ls", "--slots", "128", "--max-payload", "4K", "--arena", "1M")
        self.start_worker(name)
        self.start_worker(name)
        ids = [self.enqueue(name, "echo", "--payload", "x%d" % i) for i in range(3)]
        for jid in ids:
            self.expect(0, "wait", name, jid, "--timeout", "20")

        listing = self.js("ls")
        self.assertIsInstance(listing, list)
        mine = [e for e in listing if e.get("name") == name]
        self.assertEqual(len(mine), 1, "ls --json lists %s once: %r" % (name, listing))
        e = mine[0]
        for k in ("name", "path", "region_bytes", "slots", "jobs", "attached", "log_dir", "durability", "error"):
            self.assertIn(k, e)
        self.assertEqual(e["path"], "/dev/shm" + name)
        self.assertEqual(e["slots"], 128)
        self.assertEqual(e["jobs"], 3)
        self.assertGreaterEqual(e["attached"], 2)
        self.assertIsNone(e["log_dir"])
        self.assertEqual(e["durability"], "none")
        self.assertIsNone(e["error"])
        self.assertEqual(e["region_bytes"], self.js("info", name, "--interval", "0")["store"]["region_bytes"])

        # The same with /dev/shm named, and in text.
        self.assertTrue(any(x.get("name") == name for x in self.js("ls", "/dev/shm")))
        r = self.ok("ls")
        self.assertIn(name, r.out)
        header = r.out.splitlines()[0]
        for col in ("NAME", "SIZE", "SLOTS", "JOBS", "ATTACHED", "LOG"):
            self.assertIn(col, header, str(r))

        # rm: the name goes; the workers attached keep running.
        self.ok("rm", name)
        self.assertFalse(os.path.exists("/dev/shm" + name))
        r = self.expect(1, "info", name)
        self.assertIn("No such file or directory", r.err)
        self.assertIn(name, r.err)
        self.assertFalse(any(x.get("name") == name for x in self.js("ls")))
        r = self.expect(1, "rm", name)
        self.assertIn(name, r.err)
        for w in self.workers:
            self.assertIsNone(w.poll(), "a worker died when its store's name was removed")

    def test_ls_directory_of_files(self):
        d = self.scratch_dir("ls")
        os.makedirs(d)
        path = os.path.join(d, "store.tr")
        self.ok("create", path, "--slots", "16", "--max-payload", "1K", "--arena", "64K")
        with open(os.path.join(d, "junk.txt"), "w") as f:
            f.write("not a store\n" * 100)
        listing = self.js("ls", d)
        self.assertIsInstance(listing, list)
        self.assertEqual(len(listing), 1, "only the store is listed: %r" % listing)
        e = listing[0]
        self.assertEqual(os.path.realpath(e["path"]), os.path.realpath(path))
        self.assertEqual(os.path.realpath(e["name"]), os.path.realpath(path))
        self.assertEqual(e["slots"], 16)
        self.assertEqual(e["jobs"], 0)
        self.assertEqual(e["attached"], 0)
        self.assertIsNone(e["error"])
        # A store that cannot be opened (cut short) is listed with its error.
        broken = os.path.join(d, "broken.tr")
        with open(path, "rb") as f, open(broken, "wb") as g:
            g.write(f.read(os.path.getsize(path) // 2))
        listing = sorted(self.js("ls", d), key=lambda x: x["path"])
        self.assertEqual(len(listing), 2, listing)
        self.assertEqual(os.path.realpath(listing[0]["path"]), os.path.realpath(broken))
        self.assertIsInstance(listing[0]["error"], str, listing[0])
        self.assertTrue(listing[0]["error"])
        self.assertIsNone(listing[1]["error"])
        r = self.ok("ls", d)
        self.assertIn("broken.tr", r.out)
        os.unlink(broken)

        self.ok("rm", path)
        self.assertFalse(os.path.exists(path))
        self.assertEqual(self.js("ls", d), [])


# ------------------------------------------------------------------------------
# enqueue, wait, show, jobs
# ------------------------------------------------------------------------------

class TestJobs(CliTest):

    def setUp(self):
        super().setUp()
        self.s = self.new_store("jobs")
        self.start_worker(self.s)

    def test_echo_payloads_and_wait(self):
        s = self.s
        a = self.enqueue(s, "echo", "--payload", "hello world")
        r = self.expect(0, "wait", s, a, "--result", "--timeout", "20")
        self.assertEqual(r.raw, b"hello world")
        r = self.expect(0, "wait", s, a)
        self.assertIn("complete", r.out)
        j = self.js("wait", s, a)
        self.assertEqual(j["id"], a)
        self.assertEqual(j["status"], "complete")

        # An empty payload gives an empty result.
        e = self.enqueue(s, "echo")
        self.assertEqual(self.expect(0, "wait", s, e, "--result").raw, b"")

        # show --json: the library's job object.
        j = self.show(s, a)
        self.assertEqual(j["status"], "complete")
        self.assertEqual(j["task_name"], "echo")
        self.assertEqual(j["queue"], "default")
        self.assertEqual(j["errors"], [])
        self.assertIsNone(j["error"])
        self.assertEqual(j["dependencies"], [])
        self.assertEqual(j["dependents"], [])
        for k in ("priority", "progress", "retry_count", "max_retries", "created_at", "scheduled_at",
                  "started_at", "completed_at", "timeout_ms", "unique_key", "metadata"):
            self.assertIn(k, j)
        self.assertLessEqual(j["created_at"], j["started_at"])
        self.assertLessEqual(j["started_at"], j["completed_at"])

        r = self.ok("show", s, a)
        self.assertIn(a, r.out)
        self.assertIn("complete", r.out)
        self.assertIn("echo", r.out)

    def test_payload_file(self):
        s = self.s
        # --payload-file: every byte value, kept exactly.
        d = self.scratch_dir("payload")
        os.makedirs(d)
        blob = bytes(range(256)) * 3 + b"\n\x00end"
        fn = os.path.join(d, "payload.bin")
        with open(fn, "wb") as f:
            f.write(blob)
        b = self.enqueue(s, "echo", "--payload-file", fn)
        self.assertEqual(self.expect(0, "wait", s, b, "--result").raw, blob)

    def test_payload_stdin(self):
        s = self.s
        # --payload-file - reads stdin.
        c = self.enqueue(s, "echo", "--payload-file", "-", input=b"from stdin\x00\x01\xff")
        self.assertEqual(self.expect(0, "wait", s, c, "--result").raw, b"from stdin\x00\x01\xff")
        self.assertEqual(self.show(s, c)["status"], "complete")

    def test_enqueue_options(self):
        s = self.s
        # A declared task in a queue no worker serves: the jobs stay pending.
        eta = calendar.timegm((2099, 1, 1, 0, 0, 0))
        a = self.enqueue(s, "later", "--declare", "--queue", "q9", "--priority", "-3", "--max-retries", "7",
                         "--timeout", "1.5s", "--metadata", '{"a": 1}', "--eta", "2099-01-01T00:00:00Z")
        j = self.show(s, a)
        self.assertEqual(j["status"], "pending")
        self.assertEqual(j["task_name"], "later")
        self.assertEqual(j["queue"], "q9")
        self.assertEqual(j["priority"], -3)
        self.assertEqual(j["max_retries"], 7)
        self.assertEqual(j["timeout_ms"], 1500)
        self.assertEqual(j["metadata"], '{"a": 1}')
        self.assertEqual(j["scheduled_at"], eta * 1000)
        self.assertIsNone(j["started_at"])
        self.assertIsNone(j["completed_at"])
        # The text form: one "name value" line per field.
        text = dict(re.split(r"\s{2,}", line, maxsplit=1) if "  " in line else (line, "")
                    for line in self.ok("show", s, a).out.splitlines() if not line.startswith(" "))
        self.assertEqual(text.get("id"), a, text)
        self.assertEqual(text.get("task"), "later", text)
        self.assertEqual(text.get("queue"), "q9", text)
        self.assertEqual(text.get("status"), "pending", text)
        self.assertEqual(text.get("metadata"), '{"a": 1}', text)
        self.assertEqual(text.get("unique key"), "-", text)

        b = self.enqueue(s, "later", "--queue", "q9", "--eta", str(eta), "--timeout", "200ms")
        j = self.show(s, b)
        self.assertEqual(j["scheduled_at"], eta * 1000)
        self.assertEqual(j["timeout_ms"], 200)

        for spec, ms in (("3", 3000), ("2m", 120000), ("1h", 3600000), ("250000us", 250),
                         ("7000000ns", 7)):
            c = self.enqueue(s, "later", "--queue", "q9", "--timeout", spec)
            self.assertEqual(self.show(s, c)["timeout_ms"], ms, "--timeout %s" % spec)

        c = self.enqueue(s, "later", "--queue", "q9", "--delay", "60", "--ttl", "1h", "--expires", "2h",
                         "--block", "1s")
        j = self.show(s, c)
        self.assertEqual(j["status"], "pending")
        self.assertTrue(59000 <= j["scheduled_at"] - j["created_at"] <= 61000, str(j))

        # Bad values are usage errors.
        for args in (["--eta", "tomorrow"], ["--priority", "high"], ["--max-retries", "x"],
                     ["--delay", "5x"], ["--timeout", "abc"]):
            r = self.expect(2, "enqueue", s, "later", "--queue", "q9", *args)
            self.assertIn("usage", r.err.lower(), str(r))

    def test_jobs_filters(self):
        s = self.s
        e1 = self.enqueue(s, "echo", "--payload", "1")
        e2 = self.enqueue(s, "echo", "--payload", "2", "--queue", "q2", "--priority", "5")
        sl = self.enqueue(s, "slow", "--payload", "0", "--queue", "q1")
        for jid in (e1, e2, sl):
            self.expect(0, "wait", s, jid, "--timeout", "20")
        pend = self.enqueue(s, "echo", "--queue", "q1", "--delay", "1h")

        alljobs = self.js("jobs", s)
        self.assertIsInstance(alljobs, list)
        self.assertEqual(sorted(j["id"] for j in alljobs), sorted([e1, e2, sl, pend]))
        byid = {j["id"]: j for j in alljobs}
        self.assertEqual(byid[e2], self.show(s, e2), "jobs --json entries are show --json objects")
        self.assertEqual(byid[e2]["priority"], 5)

        def ids(*args):
            out = self.js("jobs", s, *args)
            self.assertIsInstance(out, list)
            return sorted(j["id"] for j in out)

        self.assertEqual(ids("--queue", "q2"), [e2])
        self.assertEqual(ids("--queue", "q1"), sorted([sl, pend]))
        self.assertEqual(ids("--task", "slow"), [sl])
        self.assertEqual(ids("--task", "echo"), sorted([e1, e2, pend]))
        self.assertEqual(ids("--state", "complete"), sorted([e1, e2, sl]))
        self.assertEqual(ids("--state", "pending"), [pend])
        self.assertEqual(ids("--state", "pending,complete"), sorted([e1, e2, sl, pend]))
        self.assertEqual(ids("--state", "dead"), [])
        self.assertEqual(ids("--state", "complete", "--queue", "q1", "--task", "slow"), [sl])
        self.assertEqual(ids("--queue", "nosuchqueue"), [])
        self.assertEqual(len(ids("--limit", "2")), 2)
        self.assertEqual(len(ids("--limit", "1", "--state", "complete")), 1)
        self.assertEqual(len(ids("--limit", "0")), 4)
        # Options before the store (getopt_long permutes).
        r = self.tr("jobs", "--json", "--queue", "q2", s)
        self.assertEqual(r.rc, 0, str(r))
        self.assertEqual([j["id"] for j in self.parse(r)], [e2])

        r = self.ok("jobs", s)
        header = r.out.splitlines()[0] if r.out else ""
        for col in ("ID", "STATE", "QUEUE", "TASK", "PRIO", "RETRIES", "PROGRESS", "CREATED", "ERROR"):
            self.assertIn(col, header, str(r))
        for jid in (e1, e2, sl, pend):
            self.assertIn(jid[:8], r.out)

        r = self.expect(2, "jobs", s, "--state", "bogus")
        self.assertIn("usage", r.err.lower())


# ------------------------------------------------------------------------------
# failures, dead letters, retry, replay
# ------------------------------------------------------------------------------

class TestFailures(CliTest):

    def test_dead_retry_replay(self):
        s = self.new_store("dead")
        self.start_worker(s)
        a = self.enqueue(s, "fail", "--max-retries", "1")
        r = self.expect(3, "wait", s, a)
        self.assertIn("dead", r.out)
        self.assertIn("fail: attempt 1", r.out + r.err)
        j = self.js("wait", s, a, rc=3)
        self.assertEqual(j["status"], "dead")

        j = self.show(s, a)
        self.assertEqual(j["status"], "dead")
        self.assertEqual(j["retry_count"], 1)
        self.assertEqual(j["max_retries"], 1)
        self.assertEqual(len(j["errors"]), 2, str(j["errors"]))
        self.assertEqual([e["attempt"] for e in j["errors"]], [0, 1])
        self.assertEqual([e["error"] for e in j["errors"]], ["fail: attempt 0", "fail: attempt 1"])
        for e in j["errors"]:
            self.assertEqual(e["job_id"], a)
        self.assertEqual(j["error"], "fail: attempt 1")
        self.assertIsNotNone(j["completed_at"])

        self.assertEqual([x["id"] for x in self.js("jobs", s, "--state", "dead")], [a])
        r = self.ok("show", s, a)
        for text in (a, "dead", "fail: attempt 0", "fail: attempt 1"):
            self.assertIn(text, r.out, "show prints the error history")

        # retry ID: a new job, which dies again.
        out = self.js("retry", s, a)
        self.assertIsInstance(out, list)
        self.assertEqual(len(out), 1)
        self.assertEqual(out[0]["id"], a)
        b = out[0]["new_id"]
        self.assertRegex(b, UUID_RE)
        self.assertNotEqual(b, a)
        self.expect(3, "wait", s, b)
        jb = self.show(s, b)
        self.assertEqual(jb["status"], "dead")
        self.assertEqual(jb["task_name"], "fail")
        self.assertEqual(jb["max_retries"], 1)
        self.assertEqual(len(jb["errors"]), 2)
        self.assertEqual(self.show(s, a)["status"], "dead", "the dead job stays as it was")

        # retry --all: both dead jobs, new ids.
        self.assertEqual(self.js("retry", s, "--all", "--queue", "q1"), [])
        out = self.js("retry", s, "--all")
        self.assertEqual(sorted(x["id"] for x in out), sorted([a, b]))
        news = [x["new_id"] for x in out]
        self.assertEqual(len(set(news) | {a, b}), 4)
        for n in news:
            self.assertEqual(self.show(s, n)["task_name"], "fail")
            self.expect(3, "wait", s, n)

        # retry of a job that is not dead fails.
        c = self.enqueue(s, "echo", "--payload", "again")
        self.expect(0, "wait", s, c)
        r = self.expect(1, "retry", s, c)
        self.assertTrue(r.err.strip())
        r = self.expect(1, "retry", s, NO_SUCH_ID)
        self.assertTrue(r.err.strip())

        # replay: a copy of any job.
        out = self.js("replay", s, c)
        self.assertIsInstance(out, dict)
        self.assertEqual(out["id"], c)
        d = out["new_id"]
        self.assertNotEqual(d, c)
        self.assertEqual(self.expect(0, "wait", s, d, "--result").raw, b"again")
        # Text: the new id.
        r = self.ok("replay", s, c)
        e = r.out.strip()
        self.assertRegex(e, "^" + UUID_RE.pattern + "$", str(r))
        self.assertNotIn(e, (c, d))
        self.assertEqual(self.expect(0, "wait", s, e, "--result").raw, b"again")
        out = self.js("replay", s, a)
        self.assertEqual(self.show(s, out["new_id"])["task_name"], "fail")
        self.expect(3, "wait", s, out["new_id"])
        self.expect(1, "replay", s, NO_SUCH_ID)

    def test_failed_permanently_wait(self):
        # max-retries 0: dead after one attempt; wait --json still prints the job.
        s = self.new_store("dead0")
        self.start_worker(s)
        a = self.enqueue(s, "fail", "--max-retries", "0")
        j = self.js("wait", s, a, "--timeout", "20", rc=3)
        self.assertEqual(j["status"], "dead")
        self.assertEqual(len(j["errors"]), 1)


# ------------------------------------------------------------------------------
# running jobs: progress, timeouts, cancel
# ------------------------------------------------------------------------------

class TestCancel(CliTest):

    def test_hold_progress_and_cancel(self):
        s = self.new_store("hold")
        self.start_worker(s)
        a = self.enqueue(s, "hold", "--payload", "55")
        self.wait_running(s, a, progress=55)

        r = self.expect(4, "wait", s, a, "--timeout", "0.2")
        r = self.expect(4, "wait", s, a, "--timeout", "200ms", "--json")
        self.assertEqual(r.out.strip(), "", "wait --json prints nothing on a timeout")
        r = self.expect(4, "wait", s, a, "--timeout", "0")

        r = self.ok("show", s, a)
        self.assertIn("55", r.out)
        self.assertIn("running", r.out)
        running = self.js("jobs", s, "--state", "running")
        self.assertEqual([j["id"] for j in running], [a])
        self.assertEqual(running[0]["progress"], 55)

        out = self.js("cancel", s, a)
        self.assertIsInstance(out, list)
        self.assertEqual(len(out), 1)
        self.assertEqual(out[0]["id"], a)
        self.assertEqual(out[0]["outcome"], "requested")
        r = self.expect(3, "wait", s, a, "--timeout", "20")
        self.assertIn("cancelled", r.out)
        self.assertEqual(self.show(s, a)["status"], "cancelled")

        # Ended: cancelling it again fails, in text and in JSON.
        r = self.expect(1, "cancel", s, a)
        self.assertTrue(r.err.strip(), str(r))
        out = self.js("cancel", s, a, rc=1)
        self.assertEqual(out[0]["id"], a)
        self.assertEqual(out[0]["outcome"], "error")
        self.assertIsInstance(out[0]["error"], str)
        self.assertTrue(out[0]["error"])

    def test_cancel_pending(self):
        s = self.new_store("cpend")
        self.start_worker(s)
        a = self.enqueue(s, "hold", "--delay", "60")
        b = self.enqueue(s, "echo", "--delay", "60")
        c = self.enqueue(s, "echo", "--delay", "1h")
        for jid in (a, b, c):
            self.assertEqual(self.show(s, jid)["status"], "pending")
        out = self.js("cancel", s, a)
        self.assertEqual(out[0]["outcome"], "cancelled")
        self.assertEqual(self.show(s, a)["status"], "cancelled")
        self.expect(3, "wait", s, a, "--timeout", "0")

        # Several at once; one of them already ended: exit 1, the others done.
        out = self.js("cancel", s, b, a, c, rc=1)
        self.assertEqual([x["id"] for x in out], [b, a, c])
        self.assertEqual([x["outcome"] for x in out], ["cancelled", "error", "cancelled"])
        self.assertEqual(self.show(s, b)["status"], "cancelled")
        self.assertEqual(self.show(s, c)["status"], "cancelled")

        d = self.enqueue(s, "echo", "--delay", "1h")
        self.ok("cancel", s, d)
        self.assertEqual(self.show(s, d)["status"], "cancelled")
        self.expect(1, "cancel", s, NO_SUCH_ID)
        out = self.js("cancel", s, NO_SUCH_ID, rc=1)
        self.assertEqual(out[0]["id"], NO_SUCH_ID)
        self.assertEqual(out[0]["outcome"], "error")
        self.assertTrue(out[0]["error"])


# ------------------------------------------------------------------------------
# queues: pause, resume, purge
# ------------------------------------------------------------------------------

class TestQueues(CliTest):

    def test_pause_resume_purge(self):
        s = self.new_store("pause")
        self.start_worker(s)
        self.ok("pause", s, "q1")
        self.assertTrue(self.queue_of(self.js("info", s, "--interval", "0"), "q1")["paused"])
        a = self.enqueue(s, "echo", "--queue", "q1", "--payload", "paused")
        # A later job of another queue runs; the paused queue's job stays.
        b = self.enqueue(s, "echo", "--payload", "free")
        self.expect(0, "wait", s, b, "--timeout", "20")
        c = self.enqueue(s, "echo", "--queue", "q2", "--payload", "free2")
        self.expect(0, "wait", s, c, "--timeout", "20")
        self.assertEqual(self.show(s, a)["status"], "pending")
        self.assertEqual([j["id"] for j in self.js("jobs", s, "--queue", "q1", "--state", "pending")], [a])
        self.expect(4, "wait", s, a, "--timeout", "0.1")

        self.ok("resume", s, "q1")
        self.assertEqual(self.expect(0, "wait", s, a, "--timeout", "20", "--result").raw, b"paused")
        self.assertFalse(self.queue_of(self.js("info", s, "--interval", "0"), "q1")["paused"])

        # purge QUEUE: its pending jobs go.
        self.ok("pause", s, "q2")
        gone = [self.enqueue(s, "echo", "--queue", "q2", "--payload", str(i)) for i in range(3)]
        self.assertEqual(self.js("purge", s, "q2"), {"removed": 3})
        for jid in gone:
            r = self.expect(1, "show", s, jid)
            self.assertIn(jid, r.err)
        self.assertEqual(self.js("jobs", s, "--queue", "q2", "--state", "pending"), [])
        self.assertEqual([j["id"] for j in self.js("jobs", s, "--queue", "q2")], [c])
        self.assertEqual(self.js("purge", s, "q2"), {"removed": 0})
        self.ok("resume", s, "q2")
        r = self.ok("purge", s, "q2")
        self.assertIn("0", r.out)

        # purge --terminal: a, b, c are complete.
        self.assertEqual(self.js("purge", s, "--terminal", "--older-than", "1h"), {"removed": 0})
        self.assertEqual(self.js("purge", s, "--terminal"), {"removed": 3})
        self.assertEqual(self.js("jobs", s), [])
        d = self.enqueue(s, "echo")
        self.expect(0, "wait", s, d)
        r = self.ok("purge", s, "--terminal")
        self.assertIn("1", r.out)
        self.expect(1, "show", s, d)
        r = self.expect(1, "purge", s, "nosuchqueue")
        self.assertTrue(r.err.strip(), str(r))


# ------------------------------------------------------------------------------
# unique keys, dependencies, declared tasks
# ------------------------------------------------------------------------------

class TestEnqueueKinds(CliTest):

    def setUp(self):
        super().setUp()
        self.s = self.new_store("kinds")
        self.start_worker(self.s)

    def test_unique_key(self):
        s = self.s
        self.ok("pause", s, "q2")
        first = self.js("enqueue", s, "echo", "--queue", "q2", "--unique-key", "k1", "--payload", "u")
        self.assertEqual(first["new"], True)
        self.assertRegex(first["id"], UUID_RE)
        second = self.js("enqueue", s, "echo", "--queue", "q2", "--unique-key", "k1", "--payload", "v")
        self.assertEqual(second, {"id": first["id"], "new": False})
        r = self.ok("enqueue", s, "echo", "--queue", "q2", "--unique-key", "k1")
        self.assertIn(first["id"], r.out)
        self.assertIn("existing", r.out)
        other = self.js("enqueue", s, "echo", "--queue", "q2", "--unique-key", "k2")
        self.assertEqual(other["new"], True)
        self.assertNotEqual(other["id"], first["id"])
        self.assertEqual(self.show(s, first["id"])["unique_key"], "k1")
        self.assertEqual(len(self.js("jobs", s, "--queue", "q2")), 2)
        # Once ended, the key makes a new job.
        self.ok("resume", s, "q2")
        self.assertEqual(self.expect(0, "wait", s, first["id"], "--result").raw, b"u")
        third = self.js("enqueue", s, "echo", "--queue", "q2", "--unique-key", "k1")
        self.assertEqual(third["new"], True)
        self.assertNotEqual(third["id"], first["id"])

    def test_depends_on(self):
        s = self.s
        # a waits in a paused queue, so c is enqueued while a is pending.
        self.ok("pause", s, "q1")
        a = self.enqueue(s, "slow", "--payload", "100", "--queue", "q1")
        b = self.enqueue(s, "echo", "--payload", "after")
        c = self.enqueue(s, "echo", "--depends-on", a, "--depends-on", b, "--payload", "both")
        self.assertEqual(self.show(s, c)["dependencies"], [a, b])
        self.assertEqual(self.show(s, c)["status"], "pending")
        self.assertEqual(self.show(s, a)["dependents"], [c])
        self.expect(4, "wait", s, c, "--timeout", "0.1")
        self.ok("resume", s, "q1")
        self.assertEqual(self.expect(0, "wait", s, c, "--result").raw, b"both")
        ja, jc = self.show(s, a), self.show(s, c)
        self.assertLessEqual(ja["completed_at"], jc["started_at"])
        self.assertIn(c, ja["dependents"])

        # A dependency cancelled: its dependent is cancelled too.
        h = self.enqueue(s, "hold", "--payload", "10")
        d = self.enqueue(s, "echo", "--depends-on", h)
        self.assertEqual(self.show(s, d)["status"], "pending")
        self.assertEqual(self.show(s, h)["dependents"], [d])
        self.wait_running(s, h)
        self.ok("cancel", s, h)
        self.expect(3, "wait", s, h)
        r = self.expect(3, "wait", s, d)
        self.assertIn("cancelled", r.out)
        self.assertIn("dependency", self.show(s, d)["error"])

        # Depending on a job that does not exist fails.
        r = self.expect(1, "enqueue", s, "echo", "--depends-on", NO_SUCH_ID)
        self.assertTrue(r.err.strip())
        r = self.tr("enqueue", s, "echo", "--depends-on", "not-an-id")
        self.assertIn(r.rc, (1, 2), str(r))
        self.assertTrue(r.err.strip())

    def test_block(self):
        # A full store: every slot holds a pending job of a paused queue.
        s = self.new_store("block", "--slots", "16", "--max-payload", "1K", "--arena", "64K")
        self.start_worker(s)
        self.ok("pause", s, "q1")
        ids = [self.enqueue(s, "echo", "--queue", "q1") for _ in range(16)]
        r = self.expect(1, "enqueue", s, "echo", "--queue", "q1")
        self.assertTrue(r.err.strip())
        r = self.expect(1, "enqueue", s, "echo", "--queue", "q1", "--block", "0.1")
        self.assertTrue(r.err.strip())
        # --block waits for room: a cancelled job gives up its slot.
        p = subprocess.Popen([TOOL, "enqueue", s, "echo", "--queue", "q1", "--block", "20", "--json"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            self.ok("cancel", s, ids[0])
            out, err = p.communicate(timeout=CMD_TIMEOUT)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.assertEqual(p.returncode, 0, err.decode(errors="replace"))
        doc = json.loads(out.decode())
        self.assertEqual(doc["new"], True)
        self.assertEqual(self.show(s, doc["id"])["status"], "pending")

    def test_declare(self):
        s = self.s
        r = self.expect(1, "enqueue", s, "newtask", "--queue", "q9")
        self.assertIn("unknown task", r.err)
        self.assertEqual(self.js("jobs", s, "--task", "newtask"), [])
        a = self.enqueue(s, "newtask", "--declare", "--queue", "q9", "--payload", "x")
        j = self.show(s, a)
        self.assertEqual((j["status"], j["task_name"], j["queue"]), ("pending", "newtask", "q9"))
        # Declared once, known from then on.
        b = self.enqueue(s, "newtask", "--queue", "q9")
        self.assertEqual(sorted(x["id"] for x in self.js("jobs", s, "--task", "newtask")), sorted([a, b]))
        # Declaring a task the workers registered is harmless.
        e = self.enqueue(s, "echo", "--declare", "--payload", "ok")
        self.assertEqual(self.expect(0, "wait", s, e, "--result").raw, b"ok")


# ------------------------------------------------------------------------------
# info
# ------------------------------------------------------------------------------

class TestInfo(CliTest):

    def test_info_json(self):
        s = self.new_store("info")
        w1 = self.start_worker(s)
        w2 = self.start_worker(s)
        self.ok("pause", s, "q2")
        ok = [self.enqueue(s, "echo", "--payload", str(i)) for i in range(2)]
        dead = self.enqueue(s, "fail", "--queue", "q1", "--max-retries", "0")
        pend = self.enqueue(s, "echo", "--queue", "q2")
        for jid in ok:
            self.expect(0, "wait", s, jid)
        self.expect(3, "wait", s, dead)

        info = self.js("info", s, "--interval", "0")
        self.assertIsInstance(info, dict)
        self.assertEqual(info["store"]["name"], s)
        self.assertEqual(info["store"]["slots"], 256)
        self.assertEqual(info["store"]["max_payload"], 64 * 1024)
        self.assertEqual(info["interval_ms"], 0)
        names = [q["name"] for q in info["queues"]]
        for q in ("default", "q1", "q2"):
            self.assertIn(q, names)
        for q in info["queues"]:
            self.assertEqual(sorted(q["counts"]), sorted(STATES))
            for k in COUNTERS:
                self.assertTrue(is_number(q[k]), "%s.%s" % (q["name"], k))
            self.assertIsInstance(q["paused"], bool)
            self.assertIsNone(q["enqueued_per_s"], "--interval 0: no rates")
            self.assertIsNone(q["ended_per_s"])
        qd, q1, q2 = (self.queue_of(info, n) for n in ("default", "q1", "q2"))
        self.assertEqual(qd["counts"], dict.fromkeys(STATES, 0) | {"complete": 2})
        self.assertEqual(q1["counts"], dict.fromkeys(STATES, 0) | {"dead": 1})
        self.assertEqual(q2["counts"], dict.fromkeys(STATES, 0) | {"pending": 1})
        self.assertEqual((qd["enqueued"], qd["started"], qd["completed"]), (2, 2, 2))
        self.assertEqual((q1["enqueued"], q1["started"], q1["dead"]), (1, 1, 1))
        self.assertEqual((q2["enqueued"], q2["started"]), (1, 0))
        self.assertEqual((qd["paused"], q1["paused"], q2["paused"]), (False, False, True))

        t = info["totals"]
        self.assertNotIn("name", t)
        self.assertNotIn("paused", t)
        self.assertEqual(t["counts"], {"pending": 1, "running": 0, "complete": 2, "failed": 0, "dead": 1,
                                       "cancelled": 0})
        for k in COUNTERS:
            self.assertEqual(t[k], sum(q[k] for q in info["queues"]), k)
        self.assertEqual(t["enqueued"], 4)

        procs = {p["pid"]: p for p in info["processes"]}
        for w in (w1, w2):
            self.assertIn(w.pid, procs, "worker %d among the processes: %r" % (w.pid, info["processes"]))
            p = procs[w.pid]
            self.assertIs(p["alive"], True)
            self.assertIs(p["self"], False)
            self.assertTrue(is_number(p["heartbeat_age_ms"]))
            self.assertTrue(is_number(p["attached_at"]))
            self.assertEqual(p["name"], "cli_worker")
        self.assertEqual(sum(1 for p in info["processes"] if p["self"]), 1, "the tool itself, once")

        self.assertIsNone(info["log"])
        for k in ("processes_reaped", "jobs_reaped", "blocks_freed", "scans"):
            self.assertTrue(is_number(info["reaper"][k]), k)

        # Rates over an interval.
        info = self.js("info", s, "--interval", "0.2")
        self.assertEqual(info["interval_ms"], 200)
        for q in info["queues"] + [info["totals"]]:
            self.assertTrue(is_number(q["enqueued_per_s"]), q)
            self.assertTrue(is_number(q["ended_per_s"]), q)
            self.assertGreaterEqual(q["enqueued_per_s"], 0)
        # The default interval is 1 s.
        self.assertEqual(self.js("info", s)["interval_ms"], 1000)

        # --watch --json: one object per line.
        r = self.ok("info", s, "--watch", "--json", "--count", "2", "--interval", "0.1")
        lines = [x for x in r.out.split("\n") if x.strip()]
        self.assertEqual(len(lines), 2, str(r))
        for line in lines:
            doc = json.loads(line)
            self.assertEqual(doc["store"]["name"], s)
            self.assertEqual(doc["totals"]["counts"]["complete"], 2)

        r = self.ok("info", s)
        for q in ("default", "q1", "q2"):
            self.assertIn(q, r.out)
        self.assertIn(str(w1.pid), r.out)
        r = self.ok("info", s, "--watch", "--count", "2", "--interval", "0.05")
        self.assertIn("default", r.out)


# ------------------------------------------------------------------------------
# a store with a log
# ------------------------------------------------------------------------------

class TestDurable(CliTest):

    def test_durable_store(self):
        logs = self.scratch_dir("logs")
        os.makedirs(logs)
        d = os.path.join(logs, "durable")
        s = self.store_name("durable")
        st = self.js("create", s, "--slots", "64", "--max-payload", "4K", "--arena", "1M",
                     "--log-dir", d, "--segment-bytes", "1M")
        self.assertEqual(st["slots"], 64)
        self.assertTrue(os.path.isdir(d))

        info = self.js("info", s, "--interval", "0")
        log = info["log"]
        self.assertIsInstance(log, dict)
        self.assertEqual(os.path.realpath(log["dir"]), os.path.realpath(d))
        self.assertEqual(log["mode"], "durable")
        for k in ("flush_interval_ms", "disk_bytes", "staged", "written", "durable", "next_seq",
                  "compactions"):
            self.assertTrue(is_number(log[k]), "log.%s: %r" % (k, log.get(k)))
        self.assertIs(log["failed"], False)
        self.assertIsInstance(log["low_space"], bool)
        before = log["durable"]

        self.start_worker(s)
        a = self.enqueue(s, "echo", "--payload", "on disk")
        self.assertEqual(self.expect(0, "wait", s, a, "--result").raw, b"on disk")
        log = self.js("info", s, "--interval", "0")["log"]
        self.assertGreater(log["durable"], 0)
        self.assertGreater(log["durable"], before)
        self.assertGreaterEqual(log["written"], log["durable"])
        self.assertGreaterEqual(log["staged"], log["written"])
        self.assertGreater(log["next_seq"], 0)
        self.assertGreater(log["disk_bytes"], 0)

        e = [x for x in self.js("ls") if x.get("name") == s]
        self.assertEqual(len(e), 1)
        self.assertEqual(os.path.realpath(e[0]["log_dir"]), os.path.realpath(d))
        self.assertEqual(e[0]["durability"], "durable")

        parse = prometheus_parser()
        if parse is None:
            self.fail("python3-prometheus-client is missing: " + MAKE_DEPS)
        fams = {f.name: f for f in parse(self.ok("metrics", s).out)}
        dur = [x for x in fams["taskring_log_durable_bytes"].samples if x.name == "taskring_log_durable_bytes"]
        self.assertEqual(len(dur), 1)
        self.assertEqual(dur[0].labels.get("store"), s)
        self.assertGreater(dur[0].value, 0)
        for m in ("taskring_log_staged_bytes", "taskring_log_written_bytes", "taskring_log_next_sequence",
                  "taskring_log_disk_bytes", "taskring_log_failed", "taskring_log_low_space",
                  "taskring_log_compactions"):
            self.assertIn(m, fams)
        self.assertEqual(fams["taskring_log_failed"].samples[0].value, 0)

        self.ok("log", "verify", d)
        r = self.ok("log", "dump", d, "--json")
        recs = [json.loads(x) for x in r.out.splitlines() if x.strip()]
        self.assertGreaterEqual(len(recs), 1, str(r))
        for x in recs:
            self.assertIsInstance(x, dict)

    def test_async_store(self):
        logs = self.scratch_dir("alogs")
        os.makedirs(logs)
        d = os.path.join(logs, "async")
        s = self.store_name("async")
        self.ok("create", s, "--slots", "64", "--max-payload", "4K", "--arena", "1M", "--log-dir", d,
                "--async", "--flush-interval", "20ms", "--segment-bytes", "1M", "--manual-compact")
        log = self.js("info", s, "--interval", "0")["log"]
        self.assertEqual(log["mode"], "async")
        self.assertEqual(log["flush_interval_ms"], 20)
        e = [x for x in self.js("ls") if x.get("name") == s]
        self.assertEqual(e[0]["durability"], "async")
        a = self.enqueue(s, "later", "--declare")
        self.poll(lambda: self.js("info", s, "--interval", "0")["log"]["durable"] > 0,
                  "the async log to flush the enqueue of %s" % a)
        # --async and friends need --log-dir.
        s2 = self.store_name("async2")
        r = self.tr("create", s2, "--async")
        self.assertIn(r.rc, (1, 2), str(r))
        self.assertFalse(os.path.exists("/dev/shm" + s2))


# ------------------------------------------------------------------------------
# the reaper
# ------------------------------------------------------------------------------

class TestReap(CliTest):

    def test_reap_json(self):
        s = self.new_store("reap0")
        self.start_worker(s)
        out = self.js("reap", s)
        self.assertIsInstance(out, dict)
        for k in ("procs_gone", "owner_died", "lease_expired", "procs_attached", "recycled", "blocks_freed"):
            self.assertTrue(is_number(out[k]), k)
        self.assertEqual(out["owner_died"], 0)
        self.assertGreaterEqual(out["procs_attached"], 1)
        self.ok("reap", s)

    def test_reap_after_kill(self):
        # One worker: nobody else reaps, so the tool's reap puts the job back.
        s = self.new_store("reap1")
        w = self.start_worker(s)
        a = self.enqueue(s, "hold", "--payload", "20")
        self.wait_running(s, a, progress=20)
        w.kill()
        w.wait(timeout=CMD_TIMEOUT)
        self.assertEqual(self.show(s, a)["status"], "running", "nobody has reaped yet")
        out = self.js("reap", s)
        self.assertEqual(out["owner_died"], 1, out)
        self.assertGreaterEqual(out["procs_gone"], 1, out)
        j = self.show(s, a)
        self.assertEqual(j["status"], "pending")
        self.assertEqual(j["retry_count"], 1)
        self.assertEqual(len(j["errors"]), 1)
        self.assertIn("died", j["errors"][0]["error"])
        info = self.js("info", s, "--interval", "0")
        self.assertNotIn(w.pid, [p["pid"] for p in info["processes"] if p["alive"]])
        self.assertGreaterEqual(info["reaper"]["jobs_reaped"], 1)
        # A new worker runs it again.
        self.start_worker(s)
        self.wait_running(s, a, progress=20)
        self.ok("cancel", s, a)
        self.expect(3, "wait", s, a)

    def test_reap_with_other_worker(self):
        # Two workers: the survivor's reaper or the tool's, whichever is first.
        s = self.new_store("reap2")
        w1 = self.start_worker(s, threads=1)
        a = self.enqueue(s, "hold", "--payload", "30")
        self.wait_running(s, a, progress=30)
        self.start_worker(s, threads=1)
        w1.kill()
        w1.wait(timeout=CMD_TIMEOUT)
        out = self.js("reap", s)
        for k in ("procs_gone", "owner_died", "lease_expired", "procs_attached", "recycled", "blocks_freed"):
            self.assertTrue(is_number(out[k]), k)

        def put_back():
            j = self.show(s, a)
            return j if j["retry_count"] >= 1 and j["errors"] else None
        j = self.poll(put_back, "job %s put back after its worker was killed" % a)
        self.assertIn("died", j["errors"][0]["error"])
        self.assertTrue(out["owner_died"] >= 1 or self.js("info", s, "--interval", "0")["reaper"]["jobs_reaped"] >= 1)
        self.wait_running(s, a, progress=30)
        self.ok("cancel", s, a)
        self.expect(3, "wait", s, a)


# ------------------------------------------------------------------------------
# metrics
# ------------------------------------------------------------------------------

class TestMetrics(CliTest):

    def families(self, text):
        parse = prometheus_parser()
        if parse is None:
            self.fail("python3-prometheus-client is missing (import prometheus_client failed): " + MAKE_DEPS)
        try:
            return {f.name: f for f in parse(text)}
        except Exception as e:  # the parser raises ValueError and others
            self.fail("metrics output does not parse (%s):\n%s" % (e, text))

    def test_metrics(self):
        s = self.new_store("metrics")
        self.start_worker(s)
        self.ok("pause", s, "q2")
        for i in range(3):
            self.expect(0, "wait", s, self.enqueue(s, "echo", "--payload", str(i)))
        self.expect(3, "wait", s, self.enqueue(s, "fail", "--queue", "q1", "--max-retries", "0"))
        self.enqueue(s, "echo", "--queue", "q2")
        self.enqueue(s, "echo", "--queue", "q2")

        text = self.ok("metrics", s).out
        info = self.js("info", s, "--interval", "0")
        fams = self.families(text)
        for f in fams.values():
            for x in f.samples:
                self.assertEqual(x.labels.get("store"), s, "sample without store=: %r" % (x,))

        jobs = fams.get("taskring_jobs")
        self.assertIsNotNone(jobs, "taskring_jobs missing:\n" + text)
        self.assertEqual(jobs.type, "gauge")
        got = {(x.labels["queue"], x.labels["state"]): x.value for x in jobs.samples}
        for q in info["queues"]:
            for st in STATES:
                self.assertEqual(got.get((q["name"], st)), q["counts"][st],
                                 "taskring_jobs{queue=%s,state=%s}" % (q["name"], st))
        self.assertEqual(got[("q2", "pending")], 2)
        self.assertEqual(got[("default", "complete")], 3)

        for c in COUNTERS:
            name = "taskring_jobs_%s" % c
            f = fams.get(name)
            self.assertIsNotNone(f, "%s_total missing" % name)
            self.assertEqual(f.type, "counter", name)
            vals = {x.labels["queue"]: x.value for x in f.samples if x.name == name + "_total"}
            for q in info["queues"]:
                self.assertEqual(vals.get(q["name"]), q[c], "%s_total{queue=%s}" % (name, q["name"]))
        self.assertEqual(fams["taskring_jobs_enqueued"].type, "counter")

        paused = {x.labels["queue"]: x.value for x in fams["taskring_queue_paused"].samples}
        self.assertEqual((paused["q2"], paused["default"]), (1, 0))
        gauges = {"taskring_store_slots": 256, "taskring_store_region_bytes": info["store"]["region_bytes"],
                  "taskring_store_arena_bytes": 4 << 20}
        for g, want in gauges.items():
            self.assertEqual(fams[g].type, "gauge", g)
            self.assertEqual(fams[g].samples[0].value, want, g)
        self.assertIn("taskring_store_arena_used_bytes", fams)
        self.assertGreaterEqual(fams["taskring_processes_attached"].samples[0].value, 1)
        for c in ("taskring_reaped_processes", "taskring_reaped_jobs", "taskring_reaped_blocks",
                  "taskring_reap_scans"):
            self.assertIn(c, fams)
            self.assertEqual(fams[c].type, "counter", c)
            self.assertEqual(fams[c].samples[0].name, c + "_total")
        self.assertNotIn("taskring_log_durable_bytes", fams, "no log, no log metrics")

    def test_metrics_output_file(self):
        s = self.new_store("mfile")
        d = self.scratch_dir("metrics")
        os.makedirs(d)
        fn = os.path.join(d, "taskring.prom")
        with open(fn, "w") as f:
            f.write("stale\n")
        ino = os.stat(fn).st_ino
        self.ok("metrics", s, "--output", fn)
        self.assertEqual(os.listdir(d), ["taskring.prom"], "no temporary file left")
        self.assertNotEqual(os.stat(fn).st_ino, ino, "written elsewhere and renamed over the file")
        with open(fn) as f:
            fams = self.families(f.read())
        self.assertEqual(fams["taskring_store_slots"].samples[0].value, 256)
        self.ok("metrics", s, "--output", fn)
        self.assertEqual(os.listdir(d), ["taskring.prom"])
        # A file in a missing directory: fails, cleanly.
        r = self.tr("metrics", s, "--output", os.path.join(d, "nodir", "x.prom"))
        self.assertNotEqual(r.rc, 0)
        self.assertTrue(r.err.strip())
        self.assertEqual(os.listdir(d), ["taskring.prom"])


# ------------------------------------------------------------------------------
# top (under tmux)
# ------------------------------------------------------------------------------

class TestTop(CliTest):

    def tmux(self, sock, *args):
        env = dict(os.environ, TERM=os.environ.get("TERM") or "xterm")
        return subprocess.run(["tmux", "-L", sock] + list(args), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=CMD_TIMEOUT, env=env)

    def test_top(self):
        if not shutil.which("tmux"):
            self.fail("tmux is missing: " + MAKE_DEPS)
        s = self.new_store("top")
        self.start_worker(s)
        dead = self.enqueue(s, "fail", "--max-retries", "0")
        self.expect(3, "wait", s, dead)
        a = self.enqueue(s, "hold", "--payload", "37")
        self.wait_running(s, a, progress=37)

        sock = "taskring-test-%s-cli-%d-%d" % (RUN, os.getpid(), next(_seq))
        self.tmux_socks.append(sock)
        cmd = "exec '%s' top '%s' --interval 0.2" % (TOOL, s)
        cp = self.tmux(sock, "new-session", "-d", "-s", "top", "-x", "120", "-y", "40", cmd)
        self.assertEqual(cp.returncode, 0, cp.stderr.decode(errors="replace"))

        box = {}

        def screen_shows_job():
            cp = self.tmux(sock, "capture-pane", "-p", "-t", "top")
            if cp.returncode != 0:
                self.fail("tmux capture-pane failed (did top exit?): %s" % cp.stderr.decode(errors="replace"))
            box["screen"] = cp.stdout.decode(errors="replace")
            for line in box["screen"].splitlines():
                if a[:8] in line and "37%" in line:
                    return line
            return None
        try:
            line = self.poll(screen_shows_job, "top to show job %s at 37%%" % a[:8])
        except AssertionError as e:
            raise AssertionError("%s\n--- screen:\n%s" % (e, box.get("screen"))) from None
        self.assertRegex(line, r"\[#+", "a progress bar of '#' on the job's line: %r" % line)
        screen = box["screen"]
        self.assertIn(s, screen, "the store line")
        self.assertIn("default", screen, "the queues")
        self.assertIn(dead[:8], screen, "the newest dead jobs")
        self.assertIn("fail: attempt 0", screen, "the dead job's error")

        # p pauses the selected queue, p again resumes it.
        def paused():
            return [q["name"] for q in self.js("info", s, "--interval", "0")["queues"] if q["paused"]]
        self.assertEqual(paused(), [])
        self.assertEqual(self.tmux(sock, "send-keys", "-t", "top", "p").returncode, 0)
        got = self.poll(paused, "p in top to pause a queue")
        self.assertEqual(len(got), 1, got)
        self.assertEqual(self.tmux(sock, "send-keys", "-t", "top", "p").returncode, 0)
        self.poll(lambda: paused() == [], "p again in top to resume the queue")
        # Down selects another queue: p pauses that one.
        self.assertEqual(self.tmux(sock, "send-keys", "-t", "top", "Down").returncode, 0)
        self.assertEqual(self.tmux(sock, "send-keys", "-t", "top", "p").returncode, 0)
        got2 = self.poll(paused, "Down, p in top to pause a queue")
        self.assertEqual(len(got2), 1, got2)
        self.assertNotEqual(got2, got, "Down selected another queue")
        self.assertEqual(self.tmux(sock, "send-keys", "-t", "top", "Up").returncode, 0)
        self.assertEqual(self.tmux(sock, "send-keys", "-t", "top", "p").returncode, 0)
        self.poll(lambda: sorted(paused()) == sorted(got + got2), "Up, p in top to pause the first queue too")
        self.ok("resume", s, got[0])
        self.ok("resume", s, got2[0])

        # q quits: the pane's command ends, and with it the session.
        self.assertEqual(self.tmux(sock, "send-keys", "-t", "top", "q").returncode, 0)
        self.poll(lambda: self.tmux(sock, "has-session", "-t", "top").returncode != 0,
                  "top to exit on q")
        self.ok("cancel", s, a)
        self.expect(3, "wait", s, a)


# ------------------------------------------------------------------------------
# usage and errors
# ------------------------------------------------------------------------------

class TestUsage(CliTest):

    def test_help_of_every_command(self):
        for cmd in COMMANDS:
            for flag in ("--help", "-h"):
                r = self.tr(cmd, flag)
                self.assertEqual(r.rc, 0, str(r))
                self.assertIn("usage", r.out.lower(), str(r))
                self.assertIn(cmd, r.out, str(r))

    def test_bad_usage(self):
        s = self.new_store("usage")
        cases = [
            [],
            ["frobnicate"],
            ["frobnicate", s],
            ["info", s, "--bogus"],
            ["jobs", s, "--no-such-option"],
            ["enqueue", s, "echo", "--payload", "a", "--payload-file", "-"],
            ["info"], ["jobs"], ["show"], ["enqueue"], ["wait"], ["cancel"], ["retry"], ["replay"],
            ["purge"], ["retry", s], ["pause"], ["resume"], ["reap"], ["top"], ["metrics"], ["rm"], ["create"],
            ["show", s], ["enqueue", s], ["wait", s], ["cancel", s], ["replay", s], ["pause", s],
            ["resume", s], ["purge", s],
            ["info", s, "extra"], ["rm", s, "extra"], ["show", s, NO_SUCH_ID, "extra"],
            ["wait", s, NO_SUCH_ID, "--timeout", "abc"],
            ["wait", s, NO_SUCH_ID, "--timeout"],
            ["info", s, "--interval", "5x"],
            ["info", s, "--count", "many"],
            ["jobs", s, "--limit", "lots"],
            ["purge", s, "--terminal", "--older-than", "old"],
            ["top", s, "--interval", "soon"],
        ]
        for args in cases:
            r = self.tr(*args)
            self.assertEqual(r.rc, 2, str(r))
            self.assertIn("usage", r.err.lower(), "a message and the usage on stderr: %s" % r)
        self.assertEqual(self.js("jobs", s), [], "bad commands changed nothing")

    def test_unknown_store(self):
        s = self.store_name("nostore")
        commands = [
            ["info", s], ["info", s, "--json"], ["jobs", s], ["show", s, NO_SUCH_ID],
            ["enqueue", s, "echo"], ["enqueue", s, "echo", "--declare"], ["wait", s, NO_SUCH_ID],
            ["cancel", s, NO_SUCH_ID], ["retry", s, NO_SUCH_ID], ["retry", s, "--all"],
            ["replay", s, NO_SUCH_ID], ["purge", s, "q1"], ["purge", s, "--terminal"], ["pause", s, "q1"],
            ["resume", s, "q1"], ["reap", s], ["metrics", s], ["rm", s], ["top", s],
        ]
        for args in commands:
            r = self.tr(*args)
            self.assertEqual(r.rc, 1, str(r))
            self.assertIn(s, r.err, str(r))
            self.assertIn("No such file or directory", r.err, str(r))
            self.assertFalse(os.path.exists("/dev/shm" + s), "`%s` created the store" % " ".join(args))

    def test_bad_job_ids(self):
        s = self.new_store("ids")
        for cmd in ("show", "wait", "cancel", "retry", "replay"):
            for bad in ("not-a-uuid", "0189", NO_SUCH_ID + "0", "zz890000-0000-7000-8000-000000000000"):
                r = self.tr(cmd, s, bad)
                self.assertIn(r.rc, (1, 2), str(r))
                self.assertTrue(r.err.strip(), "a message: %s" % r)
            r = self.expect(1, cmd, s, NO_SUCH_ID)
            self.assertIn(NO_SUCH_ID, r.err, str(r))

    def test_options_anywhere(self):
        s = self.new_store("perm")
        a = self.js("info", s, "--interval", "0")
        r = self.tr("info", "--json", "--interval", "0", s)
        self.assertEqual(r.rc, 0, str(r))
        b = self.parse(r)
        self.assertEqual(a["store"], b["store"])


def main():
    missing = [p for p in (TOOL, WORKER) if not os.access(p, os.X_OK)]
    if missing:
        print("test_cli.py: missing %s: build them (make %s/taskring %s/tests/cli_worker)"
              % (", ".join(missing), BUILD, BUILD), file=sys.stderr)
        return 1
    prog = unittest.main(exit=False, argv=sys.argv)
    r = prog.result
    if r.skipped:
        print("test_cli.py: %d tests skipped" % len(r.skipped), file=sys.stderr)
    if not r.wasSuccessful() or r.testsRun == 0:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
