"""Every fault and bad input of the command line ends in one line.

Seeds (0 <= seed < 2**32, exit 2), one rule for numbers (ASCII digits), a full / read-only /
unwritable output folder for every command that writes a file (exit 1, the path named), a full
or closed stdout, Ctrl-C (exit 130), MemoryError, a --channels range too long, a bench shape too big.
The folder faults use a real 64 KiB tmpfs where this user may mount one, else injected OSErrors.
"""
import builtins
import errno
import hashlib
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import eca_ref.cli_bench as cli_bench
import eca_ref.cli_core as cli_core
from eca_ref.cli import main
from eca_ref.cli_run import run as entry_run
from eca_ref.cli_types import SEED, SEED_LIST, SeedListType, SeedType, _AsciiNumber

ROOT = Path(__file__).resolve().parents[1]
SUBMISSION = ROOT / "tests" / "grading_fixtures" / "syntax_error.py"


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], prog_name="eca-ref")


def one_line(r, code):
    """The one line on stderr of a run that ended with ``code`` (no traceback, no exception escaped)."""
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    lines = [s for s in r.stderr.splitlines() if s.strip()]
    assert r.exit_code == code and len(lines) == 1, (r.exit_code, r.stderr)
    assert "Traceback" not in r.output
    return lines[0]


def _commands(cmd=main, path=()):
    yield path, cmd
    for name, sub in getattr(cmd, "commands", {}).items():
        yield from _commands(sub, path + (name,))


# ------------------------------------------------------------------------------------------- seeds

SEED_COMMANDS = [("verify", "--seed"), ("train", "--out", "unused", "--seed"), ("ablate", "--seeds"),
                 ("grade", "unused.py", "--seed")]


@pytest.mark.parametrize("cmd", SEED_COMMANDS, ids=lambda c: c[0])
@pytest.mark.parametrize("value", ["-1", "4294967296", "８", "1.5"])
def test_a_bad_seed_is_one_line_exit_2(cmd, value):
    line = one_line(run(*cmd, value), 2)
    assert "0 <= seed < 2**32" in line and cmd[-1] in line


def test_every_seed_option_takes_the_shared_type():
    seeds = {(path, p.name): p.type for path, cmd in _commands() for p in cmd.params if "seed" in p.name}
    assert {path[0] for path, _ in seeds} >= {"verify", "train", "ablate", "grade"}
    assert all(isinstance(t, (SeedType, SeedListType)) for t in seeds.values()), seeds


def test_seed_bounds():
    assert SEED.convert("0", None, None) == 0 and SEED.convert(str(2 ** 32 - 1), None, None) == 2 ** 32 - 1
    assert SEED_LIST.convert("0, 4294967295", None, None) == [0, 2 ** 32 - 1]
    with pytest.raises(click.BadParameter):
        SEED.convert(True, None, None)


# ------------------------------------------------------------------------------ one rule for numbers

@pytest.mark.parametrize("args", [
    ["kernel-size", "-C", "８"], ["kernel-size", "-C", "8", "--gamma", "２"], ["train", "--depth", "８"],
    ["bench", "--repeats", "１"], ["bench", "--eca-shape", "２x8x4x4"], ["compare-params", "-C", "２５６"],
    ["compare-params", "--groups", "１６"], ["compare-params", "-n", "resnet50", "--stage-k", "３,5,5,7"],
    ["grade", "x.py", "--memory", "２５６"], ["ablate", "--seeds", "０"],
], ids=lambda a: "-".join(a[:2]))
def test_non_ascii_digits_are_refused_everywhere(args):
    assert "ASCII" in one_line(run(*args), 2)


def test_every_number_option_follows_the_ascii_rule():
    numeric = [(path, p.name) for path, cmd in _commands() for p in cmd.params
               if isinstance(p.type, (click.types.IntParamType, click.types.FloatParamType))
               and not isinstance(p.type, _AsciiNumber)]
    assert numeric == []


# -------------------------------------------------------------------------------- sizes checked first

def test_kernel_size_range_is_counted_before_it_is_built():
    import tracemalloc
    tracemalloc.start()
    r = run("kernel-size", "-C", "1:1000000000:1")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert "1,000,000,000" in one_line(r, 2) and peak < 50e6
    assert len(cli_core.parse_channels(["1:10000:1"])) == 10000
    assert cli_core.parse_channels(["3:8", "1:1024"]) == [3, 6] + [2 ** i for i in range(11)]
    assert "at most 10,000" in one_line(run("kernel-size", "-C", "1:10000:1", "-C", "5"), 2)


def test_bench_refuses_a_shape_too_big_before_allocating():
    line = one_line(run("bench", "--no-step", "--eca-shape", "100000x1000x100x100"), 2)
    assert "4,000.0 GB" in line and "2 GiB" in line


# ---------------------------------------------------------------------------- faults of the system

def test_memory_error_is_one_line_exit_1(monkeypatch):
    def boom(*a, **k):
        raise MemoryError("Unable to allocate 7.28 TiB for an array with shape (100000, 1000, 100, 100)")
    monkeypatch.setattr(cli_core, "kernel_size_info", boom)
    line = one_line(run("kernel-size", "-C", "8"), 1)
    assert line.startswith("Error: out of memory") and "7.28 TiB" in line


@pytest.mark.parametrize("where", ["command", "parsing"])
def test_ctrl_c_is_one_line_exit_130(monkeypatch, where):
    def interrupt(*a, **k):
        raise KeyboardInterrupt
    if where == "command":
        monkeypatch.setattr(cli_core, "parse_channels", interrupt)
    else:
        monkeypatch.setattr(type(main), "parse_args", interrupt)
    assert "Ctrl-C" in one_line(run("kernel-size", "-C", "8"), 130)


def test_ctrl_c_while_importing_at_startup(monkeypatch, capsys):
    real_import = builtins.__import__

    def importer(name, *args, **kwargs):
        if name == "eca_ref.cli":
            raise KeyboardInterrupt
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", importer)
    with pytest.raises(SystemExit) as exc:
        entry_run(["kernel-size", "-C", "8"])
    assert exc.value.code == 130 and capsys.readouterr().err == "Interrupted by Ctrl-C.\n"


def test_the_entry_point_loads_no_numpy_before_it_can_catch_ctrl_c():
    """Everything before run()'s try block (the package and cli_run) is light: NumPy loads inside it."""
    code = "import sys, eca_ref.cli_run; print('numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False", out.stderr


@pytest.mark.parametrize("delay", [0.03, 0.06, 0.1])
def test_real_sigint_in_the_first_tenth_of_a_second(delay):
    p = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "verify"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    p.send_signal(signal.SIGINT)
    err = p.communicate(timeout=60)[1]
    # In the first few milliseconds Python itself is still starting (importing site and the .pth files of
    # the installed packages, or entering cli.py at "line 0") and ends in its own way; from the first line
    # of eca-ref's code on, the entry point answers with its one line: no frame of a traceback lies in it.
    ours = [(f, line) for f, line in re.findall(r'File "([^"]+)", line (\d+)', err)
            if int(line) > 0 and (Path(f).resolve() == ROOT / "cli.py" or (ROOT / "eca_ref") in Path(f).resolve().parents)]
    assert not ours, err
    if p.returncode == 130:
        assert err.strip() == "Interrupted by Ctrl-C.", err


def test_real_sigint_during_a_command():
    args = ["bench", "--no-step", "--no-torch", "--repeats", "1000000", "--eca-shape", "2x8x4x4"]  # minutes
    p = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *args], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)   # past the imports of NumPy; the wrapper also covers the rest of the imports
    p.send_signal(signal.SIGINT)
    err = p.communicate(timeout=60)[1]
    assert p.returncode == 130 and "Traceback" not in err and err.strip() == "Interrupted by Ctrl-C.", err


STDOUT_COMMANDS = [["kernel-size", "-C", "8"], ["kernel-size", "-C", "8", "--json"], ["compare-params", "--json"],
                   ["assignment", "rubric"], ["--help"], ["verify"]]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
@pytest.mark.parametrize("args", STDOUT_COMMANDS, ids=lambda a: "-".join(a[:2]))
def test_a_full_stdout_is_one_line_exit_1(args):
    with open("/dev/full", "w") as full:
        p = subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], stdout=full, stderr=subprocess.PIPE,
                           text=True, timeout=120)
    assert p.returncode == 1 and p.stderr.startswith("Error: cannot write to standard output: No space left"), p.stderr
    assert len(p.stderr.splitlines()) == 1 and "Exception ignored" not in p.stderr


@pytest.mark.parametrize("args", [["kernel-size", "-C", "1:4096:1"], ["kernel-size", "-C", "1:4096:1", "--json"]],
                         ids=["rich", "echo"])
def test_a_closed_pipe_ends_quietly_with_1(args):
    p = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    p.stdout.close()   # the reader went away before anything was written (like `| head -c1`)
    err = p.stderr.read()
    p.wait(timeout=60)
    assert p.returncode == 1 and err == "", err


# ------------------------------------------------------------- every command that writes a file

def _mount(folder: Path, opts: str) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(folder)], capture_output=True)
    return r.returncode == 0


def _refuse_writes(monkeypatch, folder: Path, code: int):
    """Injected faults: opening for writing, creating or renaming anything under ``folder`` fails with ``code``."""
    base = str(folder)

    def inside(p):
        return isinstance(p, (str, bytes, os.PathLike)) and os.path.abspath(os.fsdecode(p)).startswith(base)

    def refuse(p):
        raise OSError(code, os.strerror(code), os.fsdecode(p))

    def wrap_open(real):
        def opener(file, mode="r", *a, **k):
            if inside(file) and any(c in mode for c in "wax+"):
                refuse(file)
            return real(file, mode, *a, **k)
        return opener

    def wrap_os_open(real):
        def opener(path, flags, *a, **k):
            if inside(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
                refuse(path)
            return real(path, flags, *a, **k)
        return opener

    def wrap_path(real, at=0):
        def call(*a, **k):
            if inside(a[at]):
                refuse(a[at])
            return real(*a, **k)
        return call

    monkeypatch.setattr(builtins, "open", wrap_open(builtins.open))
    monkeypatch.setattr(io, "open", wrap_open(io.open))
    monkeypatch.setattr(os, "open", wrap_os_open(os.open))
    monkeypatch.setattr(os, "mkdir", wrap_path(os.mkdir))
    monkeypatch.setattr(os, "replace", wrap_path(os.replace, 1))
    monkeypatch.setattr(os, "rename", wrap_path(os.rename, 1))


@pytest.fixture(params=["full", "read-only", "permission"])
def bad_folder(request, tmp_path, monkeypatch):
    folder = tmp_path / "fs"
    folder.mkdir()
    mounted = request.param != "permission" and _mount(folder, "size=64k")
    if mounted and request.param == "full":
        try:
            with open(folder / "filler", "wb") as f:
                while True:
                    f.write(b"\0" * 4096)
                    f.flush()
        except OSError:
            pass
    elif mounted:
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
    else:   # root writes through chmod 555, and mount may be refused: inject the system's answer
        code = {"full": errno.ENOSPC, "read-only": errno.EROFS, "permission": errno.EACCES}[request.param]
        _refuse_writes(monkeypatch, folder, code)
    yield folder
    if mounted:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    from eca_ref.data import make_fake_cifar10
    return make_fake_cifar10(tmp_path_factory.mktemp("cifar"), n_train=20, n_test=10, formats=("binary",),
                             archives=True)


def _writers(folder: Path, fake, tmp: Path):
    archive = fake.root / "cifar-10-binary.tar.gz"
    payload = archive.read_bytes()
    subs = tmp / "subs"
    subs.mkdir(exist_ok=True)
    shutil.copy(SUBMISSION, subs / "s.py")
    tiny = ["--depth", "8", "--width", "2", "--epochs", "1", "--batch-size", "8", "--data-dir", fake.root]
    return {
        "assignment-init": ["assignment", "init", folder / "starter"],
        "grade-json": ["grade", SUBMISSION, "--json", folder / "r.json"],
        "grade-csv": ["grade", subs, "--csv", folder / "grades.csv"],
        "data-download": ["data", "download", "--root", folder / "data", "--url", archive.parent.as_uri(),
                          "--md5", hashlib.md5(payload).hexdigest(), "--size", len(payload), "-q"],
        "train": ["train", *tiny, "--out", folder / "run"],
        "ablate": ["ablate", "--attention", "none", "--seeds", "0", *tiny, "--out", folder / "ablate"],
    }


WRITERS = ["assignment-init", "grade-json", "grade-csv", "data-download", "train", "ablate"]


@pytest.mark.parametrize("name", WRITERS)
def test_every_writer_on_a_bad_folder_is_one_line_exit_1(name, bad_folder, fake, tmp_path):
    line = one_line(run(*_writers(bad_folder, fake, tmp_path)[name]), 1)
    assert line.startswith("Error: ") and str(bad_folder) in line, line
