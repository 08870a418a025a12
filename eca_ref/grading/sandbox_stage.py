"""PID 1 of the grading sandbox: builds the submission's view of the file system, then runs it.

Started by the grader (:mod:`eca_ref.grading.sandbox`) as
``unshare --pid --fork --kill-child --mount --net --ipc --uts [--user --map-root-user] python -I -S
sandbox_stage.py SPEC.json ARGS...``, so this process is the first of a fresh PID namespace, in a fresh
mount, network, IPC and UTS namespace. It is the grader's code (never the submission's) and uses
the standard library only. In order:

1. a tmpfs becomes the new root; the spec's operations bind the few folders the child needs
   (``/usr``, the Python prefix, NumPy) read-only into it, hide every site-packages folder
   under an empty read-only tmpfs, bind the child's working folder read-write and its job
   folder read-only, and add /dev/null, /dev/zero, /dev/urandom;
2. ``pivot_root`` into it and detach the old root: nothing else of the host is reachable;
3. fork the child: resource limits, then ``setpriv`` drops to the sandbox user (when the grader
   is root) with no capabilities and no_new_privs, and runs the spec's command with ARGS appended;
4. reap every process until the child exits, then exit: the kernel then kills every process
   left in the PID namespace, including any that called setsid or double-forked.

Exit status: the child's, or 128 + N when a signal N killed it.
"""
import ctypes
import json
import os
import resource
import subprocess
import sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND = 1, 2, 4, 8, 32, 4096
MS_NOATIME, MS_NODIRATIME, MS_REC, MS_PRIVATE, MS_RELATIME = 1024, 2048, 16384, 1 << 18, 1 << 21
MNT_DETACH = 2
# statvfs f_flag bits -> mount flags that a remount inside a user namespace must keep (locked flags)
LOCKED = ((1, MS_RDONLY), (2, MS_NOSUID), (4, MS_NODEV), (8, MS_NOEXEC), (1024, MS_NOATIME),
          (2048, MS_NODIRATIME), (4096, MS_RELATIME))

_libc = ctypes.CDLL(None, use_errno=True)


def _mount(src, dst, fstype, flags, data=None):
    if _libc.mount(src.encode() if src else None, dst.encode(), fstype.encode() if fstype else None,
                   ctypes.c_ulong(flags), data.encode() if data else None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {src} -> {dst}: {os.strerror(err)}")


def _kept_flags(path):
    f = os.statvfs(path).f_flag
    return sum(m for bit, m in LOCKED if f & bit)


def _make_point(path, is_dir):
    if is_dir:
        os.makedirs(path, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if not os.path.exists(path):
            open(path, "w").close()


def _bind(src, dst, readonly, device=False):
    _make_point(dst, os.path.isdir(src))
    _mount(src, dst, None, MS_BIND)
    flags = MS_REMOUNT | MS_BIND | _kept_flags(src) | (0 if device else MS_NOSUID | MS_NODEV)
    if readonly:
        flags |= MS_RDONLY
    _mount(None, dst, None, flags)


def build_root(spec):
    """Steps 1 and 2: the new root, then pivot_root into it."""
    root = spec["root"]
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=8m")
    tmpfs = [root]
    for op in spec["ops"]:
        kind, dst = op[0], root + op[-1]
        if kind == "ro":
            _bind(op[1], dst, True)
        elif kind == "rw":
            _bind(op[1], dst, False)
        elif kind == "dev":
            _bind(op[1], dst, False, device=True)
        elif kind == "hide":
            _make_point(dst, True)
            _mount("tmpfs", dst, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64k")
            tmpfs.append(dst)
        elif kind == "symlink":
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            os.symlink(op[1], dst)
    os.mkdir(root + "/.old")
    subprocess.run([spec["pivot_root"], root, root + "/.old"], check=True, close_fds=True)
    os.chdir("/")
    if _libc.umount2(b"/.old", MNT_DETACH) != 0:
        raise OSError(ctypes.get_errno(), "umount of the old root failed")
    os.rmdir("/.old")
    for t in reversed(tmpfs):  # nothing of the new root but the working folder stays writable
        t = "/" + t[len(root):].lstrip("/")
        _mount(None, t, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def run_child(spec):
    os.chdir(spec["cwd"])
    for res, soft, hard in spec["limits"]:
        cur_hard = resource.getrlimit(res)[1]
        if cur_hard != resource.RLIM_INFINITY:
            soft, hard = min(soft, cur_hard), min(hard, cur_hard)
        resource.setrlimit(res, (soft, hard))
    user = []
    if spec.get("uid") is not None:
        user = [f"--reuid={spec['uid']}", f"--regid={spec['gid']}", "--clear-groups"]
    argv = [spec["setpriv"], *user, "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--",
            *spec["argv"], *spec["extra"]]
    os.execve(argv[0], argv, spec["env"])


def main(argv):
    with open(argv[1], encoding="utf-8") as f:
        spec = json.load(f)
    spec["extra"] = argv[2:]  # the protocol's file descriptors, appended to the worker's command line
    try:
        build_root(spec)
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"eca-ref sandbox: cannot build the sandbox: {exc}", file=sys.stderr, flush=True)
        return 121
    if spec.get("probe"):
        print("sandbox-ok", flush=True)
    pid = os.fork()
    if pid == 0:
        try:
            run_child(spec)
        except BaseException as exc:  # noqa: BLE001 - report and leave; this is the forked child
            print(f"eca-ref sandbox: cannot start the worker: {exc}", file=sys.stderr, flush=True)
        os._exit(122)
    while True:  # PID 1 adopts every orphan of the namespace: reap them all until the worker exits
        try:
            done, status = os.wait()
        except ChildProcessError:
            return 123
        if done == pid:
            return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
