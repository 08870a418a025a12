"""Which protections the platform offers the grader, and how the submission's process is started.

Three levels, chosen once per grader process by a real probe (never assumed):

``namespaces``
    util-linux ``unshare`` starts :mod:`eca_ref.grading.sandbox_stage` as PID 1 of fresh PID,
    mount, network, IPC and UTS namespaces. The child sees a read-only root holding ``/usr``,
    the Python prefix and NumPy and nothing else of the host (no site-packages, no eca_ref, no
    grader folder, no /proc), writes only its own working folder, has no network, and runs as
    the sandbox user (uid 65534, ``nobody``) with no capabilities when the grader is root. When
    the PID namespace's first process exits, the kernel kills every process left in it.
``userns``
    the same, inside a user namespace (``unshare --user --map-root-user``), for a grader that
    is not root: the child keeps the grader's uid outside but has no capabilities, and the
    read-only view is what keeps it off the grader's files.
``none``
    a plain child process (no namespace works here): resource limits, a private working folder,
    ``python -I -S`` with NumPy alone on its path; as root it still switches to the sandbox user
    and every process of that user is killed at the end; otherwise its process group is.

``ECA_GRADE_SANDBOX=auto|namespaces|userns|none`` (or ``sandbox=`` of grade_submission) forces
a level; a forced level that does not work here is an error, never a silent downgrade.
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import site
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy

from eca_ref.errors import InputError

STAGE = Path(__file__).with_name("sandbox_stage.py")
SANDBOX_UID = 65534     # nobody / nogroup: Gradescope's advice is to run student code unprivileged
SANDBOX_GID = 65534
LEVELS = ("namespaces", "userns", "none")
JOB_DIR, WORK_DIR = "/eca-grade-job", "/eca-grade-work"   # the child's folders inside the namespaces
SBIN_PATH = "/usr/sbin:/sbin:/usr/bin:/bin"
_cache: dict = {}


def _tool(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path=SBIN_PATH)


@dataclass
class Protections:
    """What holds for a submission on this platform; ``lines()`` is what reports show."""

    level: str                       # "namespaces", "userns" or "none"
    user: str                        # who the child runs as
    drops_user: bool                 # runs under another uid than the grader
    pid_namespace: bool              # the whole process tree ends with grading (setsid included)
    kill_scope: str                  # how stray processes are ended
    hidden_grader: bool              # a read-only view without the grader's files, eca_ref, site-packages
    no_network: bool
    notes: list = field(default_factory=list)   # why a protection is missing

    def lines(self) -> list:
        yes = {True: "yes", False: "NO"}
        out = [f"sandbox level: {self.level}",
               f"runs as: {self.user}",
               f"whole process tree ended at the end: {self.kill_scope}",
               f"grader's files, eca_ref and site-packages out of reach: "
               f"{yes[self.hidden_grader]}" + ("" if self.hidden_grader else
                                               " (not importable: python -I -S with NumPy alone; but readable)"),
               f"no network: {yes[self.no_network]}",
               "resource limits (memory, CPU, file size, time per test): yes",
               "private working folder, environment built from nothing: yes"]
        return out + [f"note: {n}" for n in self.notes]

    def summary(self) -> str:
        return (f"sandbox {self.level}: runs as {self.user}; tree ended by {self.kill_scope}; "
                f"grader files hidden: {'yes' if self.hidden_grader else 'no'}; "
                f"network: {'none' if self.no_network else 'reachable'}")

    def as_dict(self) -> dict:
        return {"level": self.level, "user": self.user, "kill_scope": self.kill_scope,
                "grader_files_hidden": self.hidden_grader, "no_network": self.no_network,
                "notes": list(self.notes)}


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _python() -> str:
    return os.path.realpath(sys.executable)


# ------------------------------------------------------------------ the child's view of the file system
def _site_dirs() -> list:
    dirs = set(site.getsitepackages() if hasattr(site, "getsitepackages") else [])
    for key in ("purelib", "platlib"):
        dirs.add(sysconfig.get_paths()[key])
    for prefix in {sys.prefix, sys.base_prefix}:
        for key in ("purelib", "platlib"):
            dirs.add(sysconfig.get_paths(vars={"base": prefix, "platbase": prefix})[key])
    dirs.add(str(Path(numpy.__file__).resolve().parent.parent))
    return sorted(os.path.realpath(d) for d in dirs if d and os.path.isdir(d))


def _under(path: str, tops) -> bool:
    return any(path == t or path.startswith(t.rstrip("/") + "/") for t in tops)


def root_ops(job: Path, work: Path) -> list:
    """The stage's operations: read-only binds, hidden folders, the two folders of this run."""
    ops, tops = [], []
    for top in ("/usr",):
        if os.path.isdir(top):
            ops.append(["ro", top, top])
            tops.append(top)
    for name in ("bin", "lib", "lib32", "lib64", "sbin"):
        p = f"/{name}"
        if os.path.islink(p):
            ops.append(["symlink", os.readlink(p), p])
        elif os.path.isdir(p):
            ops.append(["ro", p, p])
            tops.append(p)
    if os.path.exists("/etc/ld.so.cache"):
        ops.append(["ro", "/etc/ld.so.cache", "/etc/ld.so.cache"])
    prefix = os.path.realpath(sys.base_prefix)
    if not _under(prefix, tops):
        ops.append(["ro", prefix, prefix])
        tops.append(prefix)
    for d in _site_dirs():  # hidden, even NumPy's own folder: NumPy alone is bound back below
        if _under(d, tops):
            ops.append(["hide", d])
    pkg = Path(numpy.__file__).resolve().parent
    for name in ("numpy", "numpy.libs"):
        src = pkg.parent / name
        if src.is_dir():
            ops.append(["ro", str(src), str(src)])
    for dev in ("null", "zero", "urandom", "random"):
        if os.path.exists(f"/dev/{dev}"):
            ops.append(["dev", f"/dev/{dev}", f"/dev/{dev}"])
    ops.append(["ro", str(job), JOB_DIR])
    ops.append(["rw", str(work), WORK_DIR])
    return ops


# ------------------------------------------------------------------ starting a child
@dataclass
class Launch:
    """How to start one child: argv for Popen, a preexec function, how to end it, where it sees things."""

    argv: list
    preexec: object
    level: str
    job_dir: str          # the job folder as the child sees it
    work_dir: str         # the working folder as the child sees it
    kill_uid: int | None  # none level as root: kill every process of this uid at the end


def _rlimit_fn(limits, uid):
    def pre():  # runs after fork in the grader: no imports, no allocation-heavy work
        for res, soft, hard in limits:
            cur_hard = resource.getrlimit(res)[1]
            if cur_hard != resource.RLIM_INFINITY:
                soft, hard = min(soft, cur_hard), min(hard, cur_hard)
            resource.setrlimit(res, (soft, hard))
        if uid is not None:
            os.setgroups([])
            os.setgid(SANDBOX_GID)
            os.setuid(uid)

    return pre


def launch(level: str, root: Path, job: Path, work: Path, argv_for, env: dict, limits, drop: bool = True) -> Launch:
    """The Launch for ``level``. ``argv_for(job_dir, work_dir)`` gives the worker's command line;
    ``drop``: at the none level as root, switch to the sandbox user (False where it cannot run Python)."""
    if level == "none":
        uid = SANDBOX_UID if is_root() and drop else None
        return Launch(argv_for(str(job), str(work)), _rlimit_fn(limits, uid), level, str(job), str(work), uid)
    spec = {"root": str(root), "ops": root_ops(job, work), "cwd": WORK_DIR, "env": env,
            "limits": [list(x) for x in limits], "setpriv": _tool("setpriv"), "pivot_root": _tool("pivot_root"),
            "argv": argv_for(JOB_DIR, WORK_DIR),
            "uid": SANDBOX_UID if level == "namespaces" else None, "gid": SANDBOX_GID}
    spec_path = root.parent / "sandbox.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    os.chmod(spec_path, 0o600)
    cmd = [_tool("unshare") or "unshare", "--pid", "--fork", "--kill-child", "--mount", "--net", "--ipc",
           "--uts"]
    if level == "userns":
        cmd += ["--user", "--map-root-user"]
    cmd += [_python(), "-I", "-S", str(STAGE), str(spec_path)]
    return Launch(cmd, None, level, JOB_DIR, WORK_DIR, None)


def prepare_dirs(tmp: Path, level: str, drop: bool = True):
    """(root, job, work) inside ``tmp``: the child writes only ``work`` (owned by the sandbox user as root)."""
    root, job, work = tmp / "root", tmp / "job", tmp / "work"
    for d in (root, job, work):
        d.mkdir()
    os.chmod(tmp, 0o711 if level == "none" and is_root() else 0o700)
    os.chmod(job, 0o755)
    if is_root() and (level == "namespaces" or (level == "none" and drop)):
        os.chown(work, SANDBOX_UID, SANDBOX_GID)
    os.chmod(work, 0o700)
    return root, job, work


def kill_uid(uid: int):
    """Kill every process of ``uid`` (kill(-1) from a process of that uid): for the none level as root."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setgid(SANDBOX_GID)
            os.setuid(uid)
            os.kill(-1, signal.SIGKILL)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


# ------------------------------------------------------------------ detection
def _probe(level: str):
    """Start a real sandbox of ``level`` with a trivial Python command: None when it works, else why not."""
    with tempfile.TemporaryDirectory(prefix="eca-probe-") as tmp:
        tmp = Path(tmp)
        try:
            root, job, work = prepare_dirs(tmp, level)
            run = launch(level, root, job, work,
                         lambda j, w: [_python(), "-I", "-S", "-c",
                                       "import os; open('probe', 'w').write(str(os.getuid()))"],
                         {"PATH": "/usr/bin:/bin"}, [])
            res = subprocess.run(run.argv, preexec_fn=run.preexec, capture_output=True, timeout=20,
                                 cwd=str(work), stdin=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError) as exc:
            return f"{type(exc).__name__}: {exc}"
        if res.returncode != 0 or not (work / "probe").exists():
            err = res.stderr.decode("utf-8", "replace").strip().splitlines()
            return f"exit status {res.returncode}: {err[-1] if err else 'no message'}"
        want = SANDBOX_UID if is_root() and level in ("namespaces", "none") else None
        if want is not None and (work / "probe").read_text() != str(want):
            return f"the child ran as uid {(work / 'probe').read_text()}, not {want}"
        return None


def detect(requested: str | None = None) -> Protections:
    """The protections in force for ``requested`` (default: $ECA_GRADE_SANDBOX or auto); probed once."""
    requested = (requested or os.environ.get("ECA_GRADE_SANDBOX") or "auto").strip().lower()
    if requested not in LEVELS + ("auto",):
        raise InputError(f"sandbox must be auto, {', '.join(LEVELS)}; got {requested!r}")
    if requested in _cache:
        return _cache[requested]
    notes, level = [], None
    candidates = [requested] if requested != "auto" else (["namespaces"] if is_root() else ["userns"]) + ["none"]
    for cand in candidates:
        if cand != "none":
            missing = [t for t in ("unshare", "setpriv", "pivot_root") if not _tool(t)]
            if sys.platform != "linux" or missing:
                why = "not Linux" if sys.platform != "linux" else f"util-linux {'/'.join(missing)} not found"
            elif cand == "namespaces" and not is_root():
                why = "the grader is not root"
            else:
                why = _probe(cand)
            if why:
                notes.append(f"{cand} unavailable: {why}")
                if requested != "auto":
                    raise InputError(f"sandbox level {cand} does not work here: {why}")
                continue
        elif is_root():
            why = _probe("none")
            if why:
                notes.append(f"cannot run the child as uid {SANDBOX_UID} ({why}): it runs as root")
        level = cand
        break
    _cache[requested] = prot = _protections(level, notes)
    return prot


def _protections(level: str, notes: list) -> Protections:
    root = is_root()
    if level in ("namespaces", "userns"):
        user = "nobody (uid 65534), no capabilities" if level == "namespaces" else \
            f"the grader's uid {os.getuid()} in a user namespace, no capabilities"
        return Protections(level, user, level == "namespaces", True, "PID namespace (every process)", True, True,
                           notes)
    drops = root and not any("runs as root" in n for n in notes)
    if drops:
        user, scope = "nobody (uid 65534)", "killing every process of uid 65534"
    else:
        user = "root" if root else f"the grader's own user (uid {os.getuid()})"
        scope = "process group only (a process that calls setsid can survive)"
        notes = notes + ["the submission can write wherever the grader's user can; run the grader in a "
                         "throw-away container, or where unshare works"]
    notes = notes + ["no network namespace: the submission can reach the network"]
    return Protections("none", user, drops, False, scope, False, False, notes)
