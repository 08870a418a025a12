"""Run an untrusted submission in a separate, limited process and collect its outputs.

What the child process gets (see :func:`run_submission`):

- its own session (process group), killed as a whole on a time-out and at the end;
- a time limit per rubric entry and one for the whole submission, enforced here
  in the parent (``SIGKILL`` to the group), so a loop that catches every
  exception cannot outlive it;
- ``RLIMIT_AS`` (memory), ``RLIMIT_CPU``, ``RLIMIT_FSIZE`` (file size) and no
  core files, set in ``preexec_fn``;
- an environment built from nothing (PATH, HOME and TMPDIR = its folder, LANG,
  one BLAS thread): no variable of the grader's environment reaches it;
- a fresh temporary working directory holding the submission, its inputs and
  the job description, and nothing else;
- ``python -I -S``: no site-packages, no user site, no PYTHONPATH; NumPy is
  reached through a folder that links NumPy alone, so ``import eca_ref`` fails;
- stdout and stderr read by threads that keep only the first and last few KiB,
  however much the submission prints.

Outputs come back as ``.npz`` files of plain arrays, read with
:func:`safe_load_npz` (sizes and headers checked, never pickle). The grader
computes its reference answers only after the child is gone.
"""
from __future__ import annotations

import json
import os
import resource
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy

from eca_ref.grading.npz import MAX_NPZ, safe_load_npz

WORKER = Path(__file__).with_name("worker.py")
STARTUP_LIMIT = 30.0      # s for Python + NumPy to start (not the submission's time)
MAX_LINE = 1 << 20        # bytes of one protocol line
KEEP_OUTPUT = 4096        # bytes kept from the head and from the tail of stdout / stderr

_live: set = set()        # running children (tests check that none runs while answers are computed)


def live_children() -> int:
    """How many submission processes are running now."""
    return sum(1 for p in list(_live) if p.poll() is None)


# ------------------------------------------------------------------ bounded output capture
class OutputTail:
    """Keeps the first and last ``keep`` bytes of a stream and counts the rest."""

    def __init__(self, keep: int = KEEP_OUTPUT):
        self.keep = keep
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0
        self._lock = threading.Lock()

    def feed(self, data: bytes):
        with self._lock:
            self.total += len(data)
            room = self.keep - len(self.head)
            if room > 0:
                self.head += data[:room]
                data = data[room:]
            if data:
                self.tail += data
                if len(self.tail) > self.keep:
                    del self.tail[: len(self.tail) - self.keep]

    def text(self) -> str:
        with self._lock:
            head = self.head.decode("utf-8", "replace")
            tail = self.tail.decode("utf-8", "replace")
            skipped = self.total - len(self.head) - len(self.tail)
        if skipped > 0:
            return f"{head}\n[... {skipped:,} bytes left out ...]\n{tail}"
        return head + tail


def _drain(fd: int, sink: OutputTail):
    try:
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            sink.feed(chunk)
    except OSError:
        pass
    finally:
        try:
            os.close(fd)
        except OSError:
            pass


# ------------------------------------------------------------------ the child process
def _site_dir(root: Path) -> Path:
    """A folder that holds links to NumPy (and its bundled libraries) and nothing else."""
    site = root / "_site"
    site.mkdir()
    pkg = Path(numpy.__file__).resolve().parent
    for name in ("numpy", "numpy.libs"):
        src = pkg.parent / name
        if src.exists():
            os.symlink(src, site / name)
    return site


def _child_env(workdir: Path) -> dict:
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(workdir),
        "TMPDIR": str(workdir),
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


def _limits(memory_bytes: int, cpu_seconds: int, file_bytes: int):
    """preexec_fn for the child: resource limits (lowered only; no import here, it runs after fork)."""
    limits = ((resource.RLIMIT_AS, memory_bytes, memory_bytes), (resource.RLIMIT_CPU, cpu_seconds, cpu_seconds + 1),
              (resource.RLIMIT_FSIZE, file_bytes, file_bytes), (resource.RLIMIT_CORE, 0, 0))

    def pre():
        for res, soft, hard in limits:
            cur_hard = resource.getrlimit(res)[1]
            if cur_hard != resource.RLIM_INFINITY:
                soft, hard = min(soft, cur_hard), min(hard, cur_hard)
            resource.setrlimit(res, (soft, hard))

    return pre


def describe_exit(code) -> str:
    """'exit status 0' / 'killed by SIGKILL' with the likely reason."""
    if code is None:
        return "still running"
    if code >= 0:
        return f"exit status {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    why = {"SIGXCPU": " (the CPU-time limit)", "SIGXFSZ": " (it wrote a file larger than the limit)",
           "SIGSEGV": " (a crash)", "SIGKILL": " (killed by the grader or the system)"}.get(name, "")
    return f"killed by {name}{why}"


class _Child:
    def __init__(self, workdir: Path, site: Path, memory_bytes: int, cpu_seconds: int,
                 out: OutputTail, err: OutputTail):
        cmd_r, self.cmd_w = os.pipe()
        self.resp_r, resp_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-S", str(WORKER), str(workdir), str(cmd_r), str(resp_w), str(site)],
                stdin=subprocess.DEVNULL, stdout=out_w, stderr=err_w, cwd=workdir,
                env=_child_env(workdir), pass_fds=(cmd_r, resp_w), close_fds=True,
                start_new_session=True, preexec_fn=_limits(memory_bytes, cpu_seconds, MAX_NPZ))
        finally:
            for fd in (cmd_r, resp_w, out_w, err_w):
                os.close(fd)
        _live.add(self.proc)
        self.threads = [threading.Thread(target=_drain, args=(fd, sink), daemon=True)
                        for fd, sink in ((out_r, out), (err_r, err))]
        for t in self.threads:
            t.start()
        self.buf = b""
        self.code = None
        self.dead = False

    def send(self, line: str) -> bool:
        try:
            os.write(self.cmd_w, (line + "\n").encode())
            return True
        except OSError:  # the child is gone or closed its end
            return False

    def read_msg(self, deadline: float):
        """The next protocol message (a dict), or 'timeout', 'eof', 'garbage'."""
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return "timeout"
            ready, _, _ = select.select([self.resp_r], [], [], left)
            if not ready:
                return "timeout"
            chunk = os.read(self.resp_r, 1 << 16)
            if not chunk:
                return "eof"
            self.buf += chunk
            if len(self.buf) > MAX_LINE:
                return "garbage"
        line, _, self.buf = self.buf.partition(b"\n")
        try:
            msg = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return "garbage"
        return msg if isinstance(msg, dict) else "garbage"

    def kill(self) -> int | None:
        """Kill the whole process group; return the exit code of the child (idempotent)."""
        if self.dead:
            return self.code
        self.dead = True
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # cannot happen after SIGKILL short of a kernel problem
            code = None
        _live.discard(self.proc)
        for fd in (self.cmd_w, self.resp_r):
            try:
                os.close(fd)
            except OSError:
                pass
        for t in self.threads:
            t.join(timeout=2)  # a grandchild that escaped the group may hold the pipe; don't wait for it
        self.code = code
        return code

    def finish(self) -> int | None:
        """Ask the child to quit, give it a moment, then kill the group (and any grandchildren)."""
        self.send("quit")
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass
        return self.kill()


# ------------------------------------------------------------------ results of one run
@dataclass
class EntryRun:
    """What happened to one rubric entry in the child."""

    status: str                    # "ok", "timeout", "total-timeout", "died", "protocol", "not-run"
    message: str = ""              # for every status but "ok"
    errors: dict = field(default_factory=dict)   # call key -> one-line error of the submission
    outputs: dict = field(default_factory=dict)  # '<key>.<name>' -> array
    seconds: float = 0.0


@dataclass
class RunOutcome:
    import_error: str | None
    entries: list                  # EntryRun per entry of the job
    stdout: str
    stderr: str
    output_bytes: int
    restarts: int = 0


class _Undumpable:
    """While a child runs, make this process non-dumpable (Linux): a process of the same
    (non-root) user can then neither read its memory nor its environment through /proc."""

    def __enter__(self):
        self.old = None
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            self.libc = libc
            old = libc.prctl(3, 0, 0, 0, 0)  # PR_GET_DUMPABLE
            if old >= 0 and libc.prctl(4, 0, 0, 0, 0) == 0:  # PR_SET_DUMPABLE 0
                self.old = old
        except Exception:
            self.old = None
        return self

    def __exit__(self, *exc):
        if self.old is not None:
            try:
                self.libc.prctl(4, self.old, 0, 0, 0)
            except Exception:
                pass
        return False


def run_submission(source: bytes, entries: list, inputs: dict, *, timeout: float, total_timeout: float,
                   memory_mb: int) -> RunOutcome:
    """Run the entries of a job on one submission in a child process; collect its outputs.

    Args:
        source: the submission file's bytes.
        entries: the job (see :mod:`eca_ref.grading.rubric`), one dict per rubric entry.
        inputs: name -> array, the inputs of every call.
        timeout: seconds for the submission's import and for each entry.
        total_timeout: seconds for the whole submission.
        memory_mb: the child's address-space limit.
    """
    out, err = OutputTail(), OutputTail()
    runs: list = [None] * len(entries)
    import_error = None
    restarts = -1
    t_end = time.monotonic() + total_timeout
    memory_bytes = int(memory_mb) << 20
    cpu_seconds = int(total_timeout + STARTUP_LIMIT) + 1
    with tempfile.TemporaryDirectory(prefix="eca-grade-") as tmp, _Undumpable():
        workdir = Path(tmp)
        site = _site_dir(workdir)
        (workdir / "submission.py").write_bytes(source)
        (workdir / "job.json").write_text(json.dumps({"entries": entries}), encoding="utf-8")
        numpy.savez(workdir / "inputs.npz", **inputs)
        pending = list(range(len(entries)))
        while pending and import_error is None:
            restarts += 1
            child = _Child(workdir, site, memory_bytes, cpu_seconds, out, err)
            try:
                msg = child.read_msg(min(time.monotonic() + STARTUP_LIMIT, t_end + STARTUP_LIMIT))
                if not (isinstance(msg, dict) and msg.get("ev") == "ready"):
                    code = child.kill()
                    import_error = (f"the grading process failed to start ({msg}, {describe_exit(code)}); "
                                    f"its last output: {err.text()[-300:].strip()!r}")
                    break
                msg = child.read_msg(min(time.monotonic() + timeout, t_end))
                if msg == "timeout":
                    child.kill()
                    import_error = (f"importing the submission took longer than {timeout:g} s "
                                    "(an endless loop or a long computation at the top level?)")
                elif msg in ("eof", "garbage"):
                    code = child.kill()
                    import_error = (f"the submission ended the grading process while being imported "
                                    f"({describe_exit(code)}): a submission must only define functions, "
                                    "never call sys.exit or os._exit")
                elif msg.get("ev") != "imported" or not msg.get("ok"):
                    child.kill()
                    import_error = str(msg.get("error", "the submission could not be imported"))[:500]
                if import_error is not None:
                    break
                while pending:
                    i = pending[0]
                    if time.monotonic() >= t_end:
                        break
                    t0 = time.monotonic()
                    sent = child.send(f"run {i}")
                    msg = child.read_msg(min(t0 + timeout, t_end)) if sent else "eof"
                    pending.pop(0)
                    if isinstance(msg, dict) and msg.get("ev") == "done" and msg.get("entry") == i:
                        runs[i] = _collect(workdir, i, msg)
                        continue
                    if msg == "timeout":
                        child.kill()
                        if time.monotonic() >= t_end and t0 + timeout > t_end:
                            runs[i] = EntryRun("total-timeout", f"stopped: the whole submission's time limit "
                                                                f"({total_timeout:g} s) was reached")
                        else:
                            runs[i] = EntryRun("timeout", f"took longer than the time limit of {timeout:g} s "
                                                          "(an endless loop?); the grader stopped it")
                    elif msg == "eof":
                        code = child.kill()
                        runs[i] = EntryRun("died", f"the grading process ended during this test "
                                                   f"({describe_exit(code)}); did the submission call "
                                                   "sys.exit/os._exit or exhaust the memory limit?")
                    else:
                        child.kill()
                        runs[i] = EntryRun("protocol", "the submission interfered with the grader's "
                                                       "channel; this test could not be read")
                    break  # a fresh child for the remaining entries
                else:
                    child.finish()
                    break
                if pending and time.monotonic() >= t_end:
                    child.kill()
                    break
            finally:
                child.kill()
        for i in range(len(entries)):
            if runs[i] is None:
                if import_error is not None:
                    runs[i] = EntryRun("not-run", import_error)
                else:
                    runs[i] = EntryRun("not-run", f"not run: the whole submission's time limit "
                                                  f"({total_timeout:g} s) was reached")
        # the temporary folder's name differs from run to run: keep reports deterministic
        stdout, stderr = (t.text().replace(f"{workdir}{os.sep}", "") for t in (out, err))
    return RunOutcome(import_error, runs, stdout, stderr, out.total + err.total, max(0, restarts))


def _collect(workdir: Path, i: int, msg: dict) -> EntryRun:
    errors = msg.get("errors")
    errors = {str(k)[:100]: str(v)[:500] for k, v in errors.items()} if isinstance(errors, dict) else {}
    seconds = msg.get("seconds")
    seconds = float(seconds) if isinstance(seconds, (int, float)) else 0.0
    path = workdir / f"out_{i}.npz"
    try:
        outputs = safe_load_npz(path)
    except FileNotFoundError:
        return EntryRun("protocol", "the outputs of this test are missing", errors, {}, seconds)
    except (ValueError, OSError, EOFError) as exc:
        return EntryRun("protocol", f"the outputs of this test are unreadable ({exc})", errors, {}, seconds)
    return EntryRun("ok", "", errors, outputs, seconds)
