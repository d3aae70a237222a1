"""The preload never touches what the program owns: its descriptors, files, working
directory, stderr, signals, exit status, tracebacks; two copies of the library in
LD_PRELOAD act as one; an exec keeps what was counted before it.

Each program runs plain and preloaded; what it prints, the files it writes and its
exit status must be the same."""
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest

from conftest import clean_env

NA_CALL = """\
import torch, natten
q = torch.randn(1, 8, 2, 8)
natten.na1d(q, q, q, kernel_size=3)
"""


def run(py, code, cwd, env=None, stderr=subprocess.PIPE, args=()):
    script = cwd / "program.py"
    script.write_text(textwrap.dedent(code))
    return subprocess.run([py, str(script), *args], env=clean_env(NAFLOPS_WHOLE_MODEL="0", **(env or {})),
                          stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=cwd, timeout=300)


def files_of(folder):
    """The program's files, by name and bytes: not the dumps, not the program itself."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.startswith("dump") and p.name != "program.py"}


def twice(py, lib, code, tmp_path, env=None, args=()):
    """Plain and preloaded: the same exit status, stdout, stderr (but the counter's own
    "naflops:" lines) and files."""
    (tmp_path / "plain").mkdir()
    (tmp_path / "pre").mkdir()
    plain = run(py, code, tmp_path / "plain", args=args)
    pre = run(py, code, tmp_path / "pre", env={"LD_PRELOAD": lib, **(env or {})}, args=args)
    assert (pre.returncode, pre.stdout) == (plain.returncode, plain.stdout), pre.stderr
    theirs = [l for l in pre.stderr.splitlines() if not l.startswith("naflops: ")]
    assert theirs == plain.stderr.splitlines()
    assert files_of(tmp_path / "pre") == files_of(tmp_path / "plain")
    return plain, pre


def test_two_copies_act_as_one(py021, lib, tmp_path):
    """An installed copy and a build copy both in LD_PRELOAD: the first is active, the
    other dormant and silent (they used to recurse in each other's import finder)."""
    other = tmp_path / "installed" / "libnaflops.so"
    other.parent.mkdir()
    shutil.copy(lib, other)
    dump = tmp_path / "d.json"
    r = run(py021, NA_CALL + "print('ok')\n", tmp_path,
            env={"LD_PRELOAD": f"{other}:{lib}", "NAFLOPS_OUTPUT": str(dump)})
    assert r.returncode == 0 and r.stdout == "ok\n", r.stderr
    assert r.stderr.count("naflops: NATTEN FLOPs of pid") == 1
    assert [o["calls"] for o in json.loads(dump.read_text())["ops"]] == [1]


def test_run_adds_no_second_copy(py021, lib, tmp_path):
    naflops = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "scripts", "naflops")
    other = tmp_path / "libnaflops.so"
    shutil.copy(lib, other)
    r = subprocess.run([py021, naflops, "run", "--", py021, "-c",
                        "import os; print(os.environ['LD_PRELOAD'])"],
                       env=clean_env(LD_PRELOAD=str(other), NAFLOPS_LIB=lib),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout == f"{other}\n", r.stderr


DESCRIPTORS = NA_CALL + """\
import os, signal, time
os.closerange(3, 256)            # everything above stderr, the counter's too if it held any
files = [open(f"out{i}.txt", "w") for i in range(4)]
for i in range(50):              # 2.5 s: NAFLOPS_FLUSH_SECONDS=1 wakes the writer meanwhile
    for f in files:
        f.write(f"line {i}\\n")
        f.flush()
    time.sleep(0.05)
for f in files:
    f.write("end\\n")
    f.flush()
print("lines", i + 1)
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(10)
"""


def test_descriptors_never_held(py021, lib, tmp_path):
    """A program that closes every fd above 2 and opens files of its own, then is
    flushed periodically and sent SIGTERM: its files are its own (the counter used to
    write a byte into them, and read from them)."""
    plain, pre = twice(py021, lib, DESCRIPTORS, tmp_path,
                       env={"NAFLOPS_FLUSH_SECONDS": "1", "NAFLOPS_OUTPUT": "dump.json"})
    assert plain.returncode == pre.returncode == -signal.SIGTERM
    # twice() compared the files byte for byte; they are what the program wrote
    text = (tmp_path / "pre" / "out0.txt").read_text()
    assert text == "".join(f"line {i}\n" for i in range(50)) + "end\n"
    d = json.loads((tmp_path / "pre" / "dump.json").read_text())
    assert [o["calls"] for o in d["ops"]] == [1]  # the SIGTERM report


CHDIR = NA_CALL + """\
import os
os.makedirs("elsewhere", exist_ok=True)
os.chdir("elsewhere")
natten.na1d(q, q, q, kernel_size=3)
print(os.getcwd().endswith("elsewhere"))
"""


def test_relative_output_is_resolved_at_start(py021, lib, tmp_path):
    plain, pre = twice(py021, lib, CHDIR, tmp_path,
                       env={"NAFLOPS_OUTPUT": "dump.json", "NAFLOPS_FLUSH_OPS": "1"})
    assert not (tmp_path / "pre" / "elsewhere" / "dump.json").exists()
    d = json.loads((tmp_path / "pre" / "dump.json").read_text())
    assert [o["calls"] for o in d["ops"]] == [2]


STDERR_REPLACED = NA_CALL + """\
import os
os.close(2)
fd = os.open("mine.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
assert fd == 2
os.write(2, b"the program's own log\\n")
print("done")
"""


def test_summary_only_to_the_stderr_the_process_started_with(py021, lib, tmp_path):
    plain, pre = twice(py021, lib, STDERR_REPLACED, tmp_path, env={"NAFLOPS_OUTPUT": "dump.json"})
    assert (tmp_path / "pre" / "mine.log").read_text() == "the program's own log\n"
    assert [o["calls"] for o in json.loads((tmp_path / "pre" / "dump.json").read_text())["ops"]] == [1]


SIGPIPE = """\
import signal
signal.signal(signal.SIGPIPE, signal.SIG_DFL)
""" + NA_CALL + """\
print("done", flush=True)
"""


def test_summary_never_raises_sigpipe(py021, lib, tmp_path):
    """stderr is a pipe whose reader has gone, SIGPIPE at its default: the exit status
    is the program's (it used to be 141, killed by the summary's write)."""
    results = []
    for env in ({}, {"LD_PRELOAD": lib}):
        script = tmp_path / "program.py"
        script.write_text(SIGPIPE)
        read_end, write_end = os.pipe()
        os.close(read_end)  # the reader is gone before the program writes
        p = subprocess.run([py021, str(script)], env=clean_env(NAFLOPS_WHOLE_MODEL="0", **env),
                           stdout=subprocess.PIPE, stderr=write_end, text=True, cwd=tmp_path,
                           timeout=300)
        os.close(write_end)
        results.append((p.returncode, p.stdout))
    assert results[0] == results[1] == (0, "done\n")


EXEC = """\
import os, sys, torch, natten
q = torch.randn(1, 8, 2, 8)
natten.na1d(q, q, q, kernel_size=3)
if len(sys.argv) == 1:
    natten.na1d(q, q, q, kernel_size=5)
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, sys.argv[0], "after"])
print("after exec", os.getpid())
"""


def test_exec_keeps_what_was_counted(py021, lib, tmp_path):
    """os.execv: the image before writes its dump at the exec; the new image, with the
    same pid, writes beside it (PATH.exec1), not over it."""
    r = run(py021, EXEC, tmp_path, env={"LD_PRELOAD": lib, "NAFLOPS_OUTPUT": "dump-%p.json"})
    assert r.returncode == 0 and r.stdout.startswith("after exec"), r.stderr
    pid = r.stdout.split()[-1]
    before = json.loads((tmp_path / f"dump-{pid}.json").read_text())
    after = json.loads((tmp_path / f"dump-{pid}.json.exec1").read_text())
    assert sorted(o["kernel_size"][0] for o in before["ops"]) == [3, 5]
    assert [o["kernel_size"][0] for o in after["ops"]] == [3]


def test_failing_import_shows_no_frame_of_ours(py021, lib, tmp_path):
    """A torch that fails to import: the same traceback, plain and preloaded."""
    fake = tmp_path / "fake"
    (fake / "torch").mkdir(parents=True)
    (fake / "torch" / "__init__.py").write_text("raise RuntimeError('broken torch')\n")
    code = "import torch\n"
    tracebacks = []
    for env in ({}, {"LD_PRELOAD": lib}):
        r = run(py021, code, tmp_path, env={"PYTHONPATH": str(fake), **env})
        tracebacks.append((r.returncode, r.stderr))
    assert tracebacks[0] == tracebacks[1]
    assert "bootstrap" not in tracebacks[1][1] and "broken torch" in tracebacks[1][1]


def test_disable_prints_nothing_even_for_bad_values(py021, lib, tmp_path):
    r = run(py021, NA_CALL, tmp_path, env={"LD_PRELOAD": lib, "NAFLOPS_DISABLE": "1",
                                           "NAFLOPS_FORMAT": "yaml", "NAFLOPS_OUTPUT": "x%y"})
    assert r.returncode == 0 and r.stderr == ""


def test_output_folder_says_what_is_wrong(py021, lib, tmp_path):
    r = run(py021, NA_CALL, tmp_path, env={"LD_PRELOAD": lib, "NAFLOPS_OUTPUT": "runs/",
                                           "NAFLOPS_SUMMARY": "never"})
    lines = [l for l in r.stderr.splitlines() if l.startswith("naflops:")]
    assert lines == ["naflops: NAFLOPS_OUTPUT='runs/' is not valid (allowed: a file path (a "
                     "folder needs a file name after it, e.g. dir/naflops-%p.json)); using no dump"]
