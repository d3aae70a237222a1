"""Python's development mode and the program's signals, plain against preloaded.

Dev mode (-X dev, PYTHONDEVMODE=1) and PYTHONMALLOC=debug install the debug hooks on
Python's allocators, which abort on a block another allocator made: the counter's
audit hook entry (added before Py_Initialize) used to be one, and every program
ended with SIGABRT. Signals: the counter's SIGTERM handler (for the dump at SIGTERM)
used to exist while the program waited for SIGTERM synchronously, so a SIGTERM that
kills the process plain was taken by the program's sigtimedwait instead.

Each program runs plain and preloaded: the same exit status, stdout, stderr (but the
counter's "naflops:" lines) and files."""
import json
import re
import signal
import subprocess
import textwrap

import pytest

from conftest import clean_env
from test_noninterference import NA_CALL, files_of, twice

TMPNAME = re.compile(r"/tmp/tmp[A-Za-z0-9_]+")


def both(py, lib, code, tmp_path, flags=(), env=None):
    """Plain and preloaded with the same interpreter flags and environment."""
    results = []
    for name, extra in (("plain", {}), ("pre", {"LD_PRELOAD": lib})):
        cwd = tmp_path / name
        cwd.mkdir()
        script = cwd / "program.py"
        script.write_text(textwrap.dedent(code))
        results.append(subprocess.run(
            [py, *flags, str(script)], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, timeout=300,
            env=clean_env(NAFLOPS_WHOLE_MODEL="0", **(env or {}), **extra)))
    plain, pre = results
    assert (pre.returncode, pre.stdout) == (plain.returncode, plain.stdout), pre.stderr

    def lines(r, name):
        # the program's warnings name its own folder; torch's own ResourceWarning a
        # random temporary directory in each run
        text = r.stderr.replace(str(tmp_path / name), "<cwd>")
        return [TMPNAME.sub("/tmp/tmpX", l) for l in text.splitlines() if not l.startswith("naflops: ")]
    assert lines(pre, "pre") == lines(plain, "plain")
    assert files_of(tmp_path / "pre") == files_of(tmp_path / "plain")
    return plain, pre


# ------------------------------------------------------------ development mode

MODES = {
    "X-dev": ((("-X", "dev"), {})),
    "PYTHONMALLOC=debug": (((), {"PYTHONMALLOC": "debug"})),
    "PYTHONDEVMODE=1": (((), {"PYTHONDEVMODE": "1"})),
}

NO_TORCH = """\
import sys, warnings
print("dev mode", sys.flags.dev_mode, "warnings", sys.warnoptions)
open("out.txt", "w").write("written\\n")
"""

LEAKY = NA_CALL + """\
import gc
f = open("unclosed.txt", "w")   # dev mode's ResourceWarning is the program's own
f.write("x")
del f
gc.collect()
print("done")
"""


@pytest.mark.parametrize("mode", MODES)
def test_dev_mode_without_torch(py021, lib, tmp_path, mode):
    flags, env = MODES[mode]
    plain, pre = both(py021, lib, NO_TORCH, tmp_path, flags, env)
    assert plain.returncode == 0, plain.stderr


@pytest.mark.parametrize("mode", MODES)
def test_dev_mode_with_torch_and_natten(py021, lib, tmp_path, mode):
    flags, env = MODES[mode]
    plain, pre = both(py021, lib, LEAKY, tmp_path, flags, {"NAFLOPS_OUTPUT": "dump.json", **env})
    assert plain.returncode == 0 and plain.stdout == "done\n", plain.stderr
    assert "ResourceWarning" in plain.stderr or mode == "PYTHONMALLOC=debug"
    assert "naflops: total" in pre.stderr
    d = json.loads((tmp_path / "pre" / "dump.json").read_text())
    assert [o["calls"] for o in d["ops"]] == [1]


@pytest.mark.parametrize("mode", MODES)
def test_dev_mode_natten017(py017, lib, tmp_path, mode):
    """NATTEN 0.17 (libnatten's compiled ops) on torch 2.6."""
    flags, env = MODES[mode]
    code = """\
    import torch
    import natten.functional as F
    q = torch.randn(1, 2, 8, 8, requires_grad=True)
    F.na1d_qk(q, q, 3).sum().backward()
    print("ok")
    """
    plain, pre = both(py017, lib, code, tmp_path, flags, env)
    assert plain.returncode == 0 and plain.stdout == "ok\n", plain.stderr
    assert "naflops: total" in pre.stderr


# ------------------------------------------------------------ signals

# torch's threads exist (and do not block SIGTERM) once a matmul ran. (A small one: a
# large one leaves them spinning, and a handler of the counter's on one of them used
# to win the race against the main thread's wait, hiding the bug these tests pin.)
THREADS = NA_CALL + """\
import os, signal, sys, time
torch.randn(256, 256) @ torch.randn(256, 256)
"""


def signal_twice(py, lib, code, tmp_path, rc):
    plain, pre = twice(py, lib, code, tmp_path, env={"NAFLOPS_OUTPUT": "dump.json"})
    assert plain.returncode == pre.returncode == rc, (plain.stderr, pre.stderr)
    return plain, pre


def dump_calls(tmp_path):
    path = tmp_path / "pre" / "dump.json"
    return [o["calls"] for o in json.loads(path.read_text())["ops"]]


def test_sigtimedwait_after_torch_threads(py021, lib, tmp_path):
    """Blocked in the main thread only: torch's threads take it, and SIG_DFL kills."""
    code = THREADS + """\
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
os.kill(os.getpid(), signal.SIGTERM)
print("sigtimedwait got", signal.sigtimedwait({signal.SIGTERM}, 5).si_signo, flush=True)
"""
    signal_twice(py021, lib, code, tmp_path, -signal.SIGTERM)


def test_sigwait_after_torch_threads(py021, lib, tmp_path):
    code = THREADS + """\
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
os.kill(os.getpid(), signal.SIGTERM)
print("sigwait got", int(signal.sigwait({signal.SIGTERM})), flush=True)
"""
    signal_twice(py021, lib, code, tmp_path, -signal.SIGTERM)


SIGNALFD = """\
import ctypes, struct
libc = ctypes.CDLL(None, use_errno=True)
mask = ctypes.create_string_buffer(128)          # a sigset_t with SIGTERM
bit = signal.SIGTERM - 1
mask[bit // 8] = 1 << (bit % 8)
fd = libc.signalfd(-1, mask, 0)
assert fd >= 0, ctypes.get_errno()
"""


def test_signalfd_after_torch_threads(py021, lib, tmp_path):
    code = THREADS + """\
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
""" + SIGNALFD + """\
os.kill(os.getpid(), signal.SIGTERM)
info = os.read(fd, 128)
print("signalfd got", struct.unpack_from("I", info)[0], flush=True)
"""
    signal_twice(py021, lib, code, tmp_path, -signal.SIGTERM)


def test_signalfd_with_every_thread_blocking(py021, lib, tmp_path):
    """Blocked before torch starts its threads: they inherit the mask, nobody but the
    signalfd takes it, the program survives, plain and preloaded."""
    code = """\
import os, signal, struct
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
""" + SIGNALFD + NA_CALL + """\
torch.randn(512, 512) @ torch.randn(512, 512)
os.kill(os.getpid(), signal.SIGTERM)
info = os.read(fd, 128)
print("signalfd got", struct.unpack_from("I", info)[0], flush=True)
"""
    plain, pre = signal_twice(py021, lib, code, tmp_path, 0)
    assert plain.stdout == "signalfd got 15\n"
    assert dump_calls(tmp_path) == [1]  # the exit report


@pytest.mark.parametrize("wait", ["sigtimedwait", "sigwait"])
def test_mask_before_torch_threads(py021, lib, tmp_path, wait):
    code = """\
import os, signal
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
""" + NA_CALL + """\
torch.randn(512, 512) @ torch.randn(512, 512)
natten.na1d(q, q, q, kernel_size=3)
os.kill(os.getpid(), signal.SIGTERM)
got = signal.%s
print("got", got, flush=True)
""" % ("sigtimedwait({signal.SIGTERM}, 5).si_signo" if wait == "sigtimedwait"
       else "sigwait({signal.SIGTERM}).value")
    plain, pre = signal_twice(py021, lib, code, tmp_path, 0)
    assert plain.stdout == "got 15\n"
    assert dump_calls(tmp_path) == [2]


def test_waiting_thread_takes_it(py021, lib, tmp_path):
    """Every thread blocks SIGTERM (masked before torch), a Python thread waits for it
    with sigwait while the main thread keeps calling NATTEN."""
    code = """\
import os, signal, threading
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
""" + NA_CALL + """\
got = []
t = threading.Thread(target=lambda: got.append(int(signal.sigwait({signal.SIGTERM}))))
t.start()
for _ in range(3):
    natten.na1d(q, q, q, kernel_size=3)
os.kill(os.getpid(), signal.SIGTERM)
t.join()
print("thread got", got, flush=True)
"""
    plain, pre = signal_twice(py021, lib, code, tmp_path, 0)
    assert plain.stdout == "thread got [15]\n"
    assert dump_calls(tmp_path) == [4]


@pytest.mark.parametrize("when", ["before", "after"])
def test_sig_ign(py021, lib, tmp_path, when):
    ign = "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    code = ("import signal\n" + ign if when == "before" else "") + THREADS + \
        (ign if when == "after" else "") + """\
print("previous", signal.getsignal(signal.SIGTERM))
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(0.5)
natten.na1d(q, q, q, kernel_size=3)
print("alive", flush=True)
"""
    plain, pre = signal_twice(py021, lib, code, tmp_path, 0)
    assert plain.stdout.endswith("alive\n")
    assert dump_calls(tmp_path) == [2]


def test_handler_installed_late(py021, lib, tmp_path):
    """The program's handler, installed after NATTEN calls (after the counter's writer
    started), runs as plain: the exit report follows its sys.exit."""
    code = THREADS + """\
natten.na1d(q, q, q, kernel_size=3)
print("before", signal.getsignal(signal.SIGTERM))
def handler(sig, frame):
    print("handler", sig, flush=True)
    sys.exit(3)
previous = signal.signal(signal.SIGTERM, handler)
print("previous", previous)
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(10)
print("not reached")
"""
    plain, pre = signal_twice(py021, lib, code, tmp_path, 3)
    assert plain.stdout.endswith("handler 15\n")
    assert dump_calls(tmp_path) == [2]


def test_handler_restored_to_default(py021, lib, tmp_path):
    """A handler, then SIG_DFL again: SIGTERM kills, as plain."""
    code = THREADS + """\
signal.signal(signal.SIGTERM, lambda *a: None)
signal.signal(signal.SIGTERM, signal.SIG_DFL)
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(10)
print("not reached")
"""
    signal_twice(py021, lib, code, tmp_path, -signal.SIGTERM)


def test_plain_sigterm_still_writes_the_dump(py021, lib, tmp_path):
    """No handler, nothing blocked: SIGTERM kills both; preloaded, the dump and the
    summary are written first (the counter's handler, then SIG_DFL again)."""
    code = THREADS + """\
natten.na1d(q, q, q, kernel_size=3)
print("sending", flush=True)
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(10)
print("not reached")
"""
    plain, pre = signal_twice(py021, lib, code, tmp_path, -signal.SIGTERM)
    assert dump_calls(tmp_path) == [2]
    assert "naflops: total" in pre.stderr


def test_blocked_for_a_while_then_sigterm(py021, lib, tmp_path):
    """A mask that blocks SIGTERM for a while (a subprocess, the program's own critical
    section) and is lifted again: the counter's handler is back, SIGTERM kills both and
    the dump is written."""
    code = THREADS + """\
import subprocess
subprocess.run(["true"], check=True)
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
natten.na1d(q, q, q, kernel_size=3)
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(10)
print("not reached")
"""
    plain, pre = signal_twice(py021, lib, code, tmp_path, -signal.SIGTERM)
    assert dump_calls(tmp_path) == [2]


def test_disposition_reads_as_default(py021, lib, tmp_path):
    """The C-level disposition the program reads is SIG_DFL, never the counter's."""
    code = THREADS + """\
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
act = ctypes.create_string_buffer(256)
assert libc.sigaction(signal.SIGTERM, None, act) == 0
print("handler", int.from_bytes(act.raw[:8], "little"), "flags", act.raw[136:140].hex())
"""
    plain, pre = signal_twice(py021, lib, code, tmp_path, 0)
    assert plain.stdout.startswith("handler 0 ")


# ------------------------------------------------------------ -X importtime

def imported(py, code, env):
    """The modules `-X importtime` lists, in order (its timings aside)."""
    r = subprocess.run([py, "-X", "importtime", "-c", code], capture_output=True, text=True,
                       timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    return [l.split("|")[-1].strip() for l in r.stderr.splitlines() if l.startswith("import time:")]


@pytest.mark.parametrize("which", ["0.21", "0.17"])
def test_importtime_module_order(py021, py017, lib, which):
    """The report is registered from C (Py_AtExit): no atexit module imported early,
    and nothing else of ours in -X importtime's list."""
    py = py021 if which == "0.21" else py017
    code = "import torch, natten\nimport natten.functional as F\n"
    plain = imported(py, code, clean_env())
    pre = imported(py, code, clean_env(LD_PRELOAD=lib, NAFLOPS_SUMMARY="never"))
    assert len(plain) > 100 and pre == plain
