"""One child process of the grader: started through :mod:`eca_ref.grading.sandbox`, read line by line, ended whole.

The child's stdout and stderr are read by threads that keep only the first and
last few KiB; its protocol messages arrive on a pipe of their own. ``kill``
ends the whole tree: SIGKILL to the child's process group, which at the
namespace levels also ends the PID namespace (and every process in it, setsid
or not); at the none level as root, every process of the sandbox user too.
"""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import threading
import time

from eca_ref.grading.sandbox import Launch, kill_uid

MAX_LINE = 1 << 20        # bytes of one protocol line
KEEP_OUTPUT = 4096        # bytes kept from the head and from the tail of stdout / stderr

_live: set = set()        # running children (tests check that none runs while answers are computed)


def live_children() -> int:
    """How many submission processes are running now."""
    return sum(1 for p in list(_live) if p.poll() is None)


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


def describe_exit(code, sandboxed: bool = False) -> str:
    """'exit status 0' / 'killed by SIGKILL' with the likely reason.

    In a PID namespace the first process reports a signal N as exit status 128 + N.
    """
    if code is None:
        return "still running"
    if sandboxed and 128 < code < 128 + 65:
        code = -(code - 128)
    if code >= 0:
        return f"exit status {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    why = {"SIGXCPU": " (the CPU-time limit)", "SIGXFSZ": " (it wrote a file larger than the limit)",
           "SIGSEGV": " (a crash)", "SIGKILL": " (killed by the grader or the system)"}.get(name, "")
    return f"killed by {name}{why}"


class Child:
    """The running child: a command pipe, a response pipe, stdout/stderr tails."""

    def __init__(self, run: Launch, cwd, env: dict, out: OutputTail, err: OutputTail):
        cmd_r, self.cmd_w = os.pipe()
        self.resp_r, resp_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        self.run = run
        try:
            self.proc = subprocess.Popen(
                run.argv + [str(cmd_r), str(resp_w)], stdin=subprocess.DEVNULL,
                stdout=out_w, stderr=err_w, cwd=cwd, env=env, pass_fds=(cmd_r, resp_w), close_fds=True,
                start_new_session=True, preexec_fn=run.preexec)
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

    def exit_text(self) -> str:
        return describe_exit(self.code, self.run.level != "none")

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
        """End the whole tree; return the exit code of the child (idempotent)."""
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
        if self.run.kill_uid is not None:
            kill_uid(self.run.kill_uid)  # a process that left the group (setsid) goes too
        _live.discard(self.proc)
        for fd in (self.cmd_w, self.resp_r):
            try:
                os.close(fd)
            except OSError:
                pass
        for t in self.threads:
            t.join(timeout=2)  # a process that escaped (none level, not root) may hold the pipe
        self.code = code
        return code

    def finish(self) -> int | None:
        """Ask the child to quit, give it a moment, then end the whole tree."""
        self.send("quit")
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass
        return self.kill()
