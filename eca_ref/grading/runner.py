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

import ctypes
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy

from eca_ref.grading import sandbox
from eca_ref.grading.child import KEEP_OUTPUT, Child, OutputTail, describe_exit, live_children
from eca_ref.grading.npz import MAX_NPZ, safe_load_npz

__all__ = ["run_submission", "RunOutcome", "EntryRun", "OutputTail", "live_children", "describe_exit",
           "KEEP_OUTPUT", "safe_load_npz"]

WORKER = Path(__file__).with_name("worker.py")
STARTUP_LIMIT = 30.0      # s for Python + NumPy to start (not the submission's time)


# ------------------------------------------------------------------ the child process
def _site_dir(job: Path) -> Path:
    """A folder that holds links to NumPy (and its bundled libraries) and nothing else."""
    site = job / "_site"
    site.mkdir()
    pkg = Path(numpy.__file__).resolve().parent
    for name in ("numpy", "numpy.libs"):
        src = pkg.parent / name
        if src.exists():
            os.symlink(src, site / name)
    return site


def _child_env(workdir) -> dict:
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


def _limits(memory_bytes: int, cpu_seconds: int, file_bytes: int) -> list:
    """The child's resource limits (only ever lowered): memory, CPU, file size, no core files."""
    return [(resource.RLIMIT_AS, memory_bytes, memory_bytes), (resource.RLIMIT_CPU, cpu_seconds, cpu_seconds + 1),
            (resource.RLIMIT_FSIZE, file_bytes, file_bytes), (resource.RLIMIT_CORE, 0, 0)]


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
                   memory_mb: int, protections: sandbox.Protections | None = None) -> RunOutcome:
    """Run the entries of a job on one submission in a child process; collect its outputs.

    Args:
        source: the submission file's bytes.
        entries: the job (see :mod:`eca_ref.grading.rubric`), one dict per rubric entry.
        inputs: name -> array, the inputs of every call.
        timeout: seconds for the submission's import and for each entry.
        total_timeout: seconds for the whole submission.
        memory_mb: the child's address-space limit.
        protections: the sandbox level to use (default: :func:`sandbox.detect`).
    """
    prot = protections or sandbox.detect()
    out, err = OutputTail(), OutputTail()
    runs: list = [None] * len(entries)
    import_error = None
    restarts = -1
    t_end = time.monotonic() + total_timeout
    memory_bytes = int(memory_mb) << 20
    cpu_seconds = int(total_timeout + STARTUP_LIMIT) + 1
    with tempfile.TemporaryDirectory(prefix="eca-grade-") as tmp, _Undumpable():
        root, job, workdir = sandbox.prepare_dirs(Path(tmp), prot.level, prot.drops_user)
        site = _site_dir(job)
        shutil.copyfile(WORKER, job / "worker.py")
        (job / "job.json").write_text(json.dumps({"entries": entries}), encoding="utf-8")
        numpy.savez(job / "inputs.npz", **inputs)
        sub = workdir / "submission.py"
        sub.write_bytes(source)
        os.chmod(sub, 0o644)

        def argv_for(job_dir, work_dir):
            return [os.path.realpath(sys.executable), "-I", "-S", f"{job_dir}/worker.py", job_dir, work_dir,
                    f"{job_dir}/{site.name}"]

        limits = _limits(memory_bytes, cpu_seconds, MAX_NPZ)
        pending = list(range(len(entries)))
        while pending and import_error is None:
            restarts += 1
            run = sandbox.launch(prot.level, root, job, workdir, argv_for, _child_env(sandbox.WORK_DIR), limits,
                                 prot.drops_user)
            env = _child_env(run.work_dir)
            child = Child(run, str(workdir), env, out, err)
            try:
                msg = child.read_msg(min(time.monotonic() + STARTUP_LIMIT, t_end + STARTUP_LIMIT))
                if not (isinstance(msg, dict) and msg.get("ev") == "ready"):
                    code = child.kill()
                    import_error = (f"the grading process failed to start ({msg}, {child.exit_text()}); "
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
                                    f"({child.exit_text()}): a submission must only define functions, "
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
                                                   f"({child.exit_text()}); did the submission call "
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
        stdout, stderr = (t.text().replace(f"{workdir}{os.sep}", "").replace(f"{sandbox.WORK_DIR}/", "")
                          for t in (out, err))
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
