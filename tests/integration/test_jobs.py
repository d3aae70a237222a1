"""Real training jobs are not one clean process: threads, fork workers, signals,
abrupt exits, torchrun ranks, hostile paths. These run NATTEN 0.17's CPU kernels
(natten.functional.na1d_qk: 2*B*H*N*W*D FLOPs a call) under the preload."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, clean_env, run_program, run_torchrun

B, H, N, D = 1, 2, 16, 8


def qk(kernel, calls=1):
    """2*B*H*N*W*D per call."""
    return 2 * B * H * N * kernel * D * calls


HEAD = f"""
import os, sys, time, torch
import natten.functional as F
torch.manual_seed(0)
q = torch.randn({B}, {H}, {N}, {D})
"""


def dumps_in(folder, pattern="d-*.json"):
    return [json.loads(p.read_text()) for p in sorted(Path(folder).glob(pattern))]


def test_threads_exact(py017, lib, tmp_path):
    code = HEAD + """
import threading
def work():
    for _ in range(1000):
        F.na1d_qk(q, q, 3)
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
print("done")
"""
    r = run_program(py017, code, tmp_path, lib)
    assert r.returncode == 0, r.stderr
    d = r.dump
    assert [(o["op"], o["calls"]) for o in d["ops"]] == [("na1d_qk", 8000)]
    assert d["totals"]["flops"] == qk(3, 8000)


def test_dataloader_fork_workers(py017, lib, tmp_path):
    """Workers are forked and leave with os._exit: with NAFLOPS_FLUSH_OPS=1 each
    keeps a dump of its own calls; none repeats the parent's."""
    code = HEAD + """
from torch.utils.data import DataLoader, Dataset
class Items(Dataset):
    def __len__(self): return 24
    def __getitem__(self, i):
        return F.na1d_qk(q, q, 5).sum()      # kernel 5: worker calls
for _ in range(3):
    F.na1d_qk(q, q, 3)                        # kernel 3: parent calls, before the fork
n = sum(1 for _ in DataLoader(Items(), batch_size=4, num_workers=4,
                              multiprocessing_context="fork"))
F.na1d_qk(q, q, 3)
print("batches", n)
"""
    r = run_program(py017, code, tmp_path, lib,
                    env={"NAFLOPS_OUTPUT": str(tmp_path / "d-%p.json"), "NAFLOPS_FLUSH_OPS": "1"})
    assert r.returncode == 0, r.stderr
    assert r.stdout == "batches 6\n"
    dumps = dumps_in(tmp_path)
    parent = [d for d in dumps if any(o["kernel_size"] == [3] for o in d["ops"])]
    workers = [d for d in dumps if d not in parent]
    assert len(parent) == 1 and 1 <= len(workers) <= 4
    assert [(o["kernel_size"], o["calls"]) for o in parent[0]["ops"]] == [([3], 4)]
    for w in workers:  # a worker reports only its own calls
        assert [o["kernel_size"] for o in w["ops"]] == [[5]]
    assert sum(w["ops"][0]["calls"] for w in workers) == 24
    assert sum(w["totals"]["flops"] for w in workers) == qk(5, 24)


SLEEPER = HEAD + """
for _ in range(5):
    F.na1d_qk(q, q, 3)
print("ready", flush=True)
time.sleep(60)
"""


def run_and_signal(python, tmp_path, lib, sig):
    script = tmp_path / "sleeper.py"
    script.write_text(SLEEPER)
    env = clean_env()
    if lib:
        env.update(LD_PRELOAD=lib, NAFLOPS_OUTPUT=str(tmp_path / "d.json"))
    # The child starts with SIGINT and SIGTERM at their defaults and unblocked, whatever
    # the test process inherited or was left with (in the full suite the plain child
    # once ignored SIGINT and slept its 60 s: a SIG_IGN is inherited across exec).
    def defaults():
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])

    p = subprocess.Popen([python, str(script)], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, preexec_fn=defaults)
    assert p.stdout.readline() == "ready\n"
    p.send_signal(sig)
    out, err = p.communicate(timeout=60)
    return p.returncode, err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_mid_run_writes_dump(py017, lib, tmp_path, sig):
    plain_rc, plain_err = run_and_signal(py017, tmp_path, None, sig)
    rc, err = run_and_signal(py017, tmp_path, lib, sig)
    assert rc == plain_rc == -sig  # the process still dies of the signal
    d = json.loads((tmp_path / "d.json").read_text())
    assert d["totals"]["calls"] == 5 and d["totals"]["flops"] == qk(3, 5)
    assert "naflops: total" in err
    if sig == signal.SIGINT:  # Python's own KeyboardInterrupt traceback is still there
        assert "KeyboardInterrupt" in err and "KeyboardInterrupt" in plain_err


def test_program_sigterm_handler_stays_in_charge(py017, lib, tmp_path):
    code = HEAD + """
import signal
signal.signal(signal.SIGTERM, lambda *a: sys.exit(5))
for _ in range(2):
    F.na1d_qk(q, q, 3)
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(30)
"""
    r = run_program(py017, code, tmp_path, lib)
    assert r.returncode == 5
    assert r.dump["totals"]["calls"] == 2


@pytest.mark.parametrize("every,calls", [(1, 10), (3, 10), (4, 10)])
def test_os_exit_with_periodic_flush(py017, lib, tmp_path, every, calls):
    code = HEAD + f"""
for _ in range({calls}):
    F.na1d_qk(q, q, 3)
os._exit(9)
"""
    r = run_program(py017, code, tmp_path, lib, env={"NAFLOPS_FLUSH_OPS": str(every)})
    assert r.returncode == 9
    kept = r.dump["totals"]["calls"]
    assert calls - every < kept <= calls and kept % every == 0  # lost fewer than `every`
    assert r.dump["totals"]["flops"] == qk(3, kept)


def test_os_exit_without_flush_writes_nothing(py017, lib, tmp_path):
    r = run_program(py017, HEAD + "F.na1d_qk(q, q, 3)\nos._exit(0)\n", tmp_path, lib)
    assert r.returncode == 0 and not r.dump_path.exists()


def test_flush_seconds(py017, lib, tmp_path):
    code = HEAD + """
F.na1d_qk(q, q, 3)
time.sleep(2.5)
os._exit(0)
"""
    r = run_program(py017, code, tmp_path, lib, env={"NAFLOPS_FLUSH_SECONDS": "1"})
    assert r.dump["totals"]["calls"] == 1


def test_torchrun_two_ranks(py017, lib, tmp_path):
    code = HEAD + """
import torch.distributed as dist
dist.init_process_group("gloo")
rank = dist.get_rank()
for _ in range(3):
    F.na1d_qk(q, q, 3)
t = torch.ones(1) * (rank + 1)
dist.all_reduce(t)
open(f"out-{rank}.txt", "w").write(str(int(t.item())))  # stdout would interleave
dist.destroy_process_group()
"""
    run_torchrun(py017, code, tmp_path, lib)
    assert [(tmp_path / f"out-{i}.txt").read_text() for i in (0, 1)] == ["3", "3"]
    ranks = {d["rank"]: d for d in dumps_in(tmp_path, "rank-*.json")}
    assert set(ranks) == {"0", "1"}
    for rank, d in ranks.items():
        assert (d["local_rank"], d["world_size"]) == (rank, "2")
        assert d["totals"]["flops"] == qk(3, 3)
    merged = subprocess.run([sys.executable, str(ROOT / "scripts" / "naflops"), "merge",
                             "-o", str(tmp_path / "merged.json"),
                             *map(str, sorted(tmp_path.glob("rank-*.json")))],
                            capture_output=True, text=True)
    assert merged.returncode == 0, merged.stderr
    m = json.loads((tmp_path / "merged.json").read_text())
    assert m["totals"]["flops"] == 2 * ranks["0"]["totals"]["flops"] == qk(3, 6)
    assert m["totals"]["calls"] == 6


def test_torchrun_rank_without_natten_leaves_a_dump(py017, lib, tmp_path):
    """A rank that imports torch but not natten still leaves its (empty) dump, so that
    naflops merge has every rank; the launcher, with no RANK, leaves none."""
    code = """
import os, torch
import torch.distributed as dist
dist.init_process_group("gloo")
if dist.get_rank() == 0:
    import natten.functional as F
    q = torch.randn(1, 2, 16, 8)
    F.na1d_qk(q, q, 3)
dist.barrier()
dist.destroy_process_group()
"""
    run_torchrun(py017, code, tmp_path, lib, NAFLOPS_WHOLE_MODEL="0")
    names = sorted(p.name for p in tmp_path.glob("rank-*.json"))
    assert names == ["rank-0.json", "rank-1.json"]
    one = json.loads((tmp_path / "rank-1.json").read_text())
    assert one["ops"] == [] and one["natten_version"] is None and one["rank"] == "1"
    merged = subprocess.run([sys.executable, str(ROOT / "scripts" / "naflops"), "merge",
                             "-o", "-", *(str(tmp_path / n) for n in names)],
                            capture_output=True, text=True)
    assert merged.returncode == 0, merged.stderr
    m = json.loads(merged.stdout)
    assert m["ranks"] == ["0", "1"] and m["totals"]["flops"] == qk(3, 1)


def test_planted_symlink_not_followed(py017, lib, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    out = tmp_path / "d.json"
    out.symlink_to(victim)
    r = run_program(py017, HEAD + "F.na1d_qk(q, q, 3)\n", tmp_path, lib,
                    env={"NAFLOPS_OUTPUT": str(out)})
    assert r.returncode == 0
    assert victim.read_text() == "precious\n"
    assert not out.is_symlink() and json.loads(out.read_text())["totals"]["calls"] == 1


def test_dump_keeps_umask(py017, lib, tmp_path):
    script = tmp_path / "p.py"
    script.write_text(HEAD + "F.na1d_qk(q, q, 3)\n")
    env = clean_env(LD_PRELOAD=lib, NAFLOPS_OUTPUT=str(tmp_path / "d.json"))
    subprocess.run(["sh", "-c", f"umask 027 && exec {py017} {script}"], env=env, check=True,
                   capture_output=True)
    assert (tmp_path / "d.json").stat().st_mode & 0o777 == 0o640


def test_zero_size_and_hostile_arguments(py017, lib, tmp_path):
    code = HEAD + """
empty = torch.randn(0, 2, 16, 8)
try:
    print("empty", tuple(F.na1d_qk(empty, empty, 3).shape))
except Exception as e:
    print("empty raised", type(e).__name__)
for bad in [(None, q), ("q", q), (q, 3.5)]:
    try:
        F.na1d_qk(bad[0], bad[1], 3)
    except Exception as e:
        print("raised", type(e).__name__)
try:
    F.na1d_qk(q, q, kernel_size="seven")
except Exception as e:
    print("raised", type(e).__name__)
F.na1d_qk(q, q, 3)
"""
    plain = run_program(py017, code, tmp_path / "a" if (tmp_path / "a").mkdir() is None else None)
    (tmp_path / "b").mkdir()
    pre = run_program(py017, code, tmp_path / "b", lib)
    assert (pre.returncode, pre.stdout) == (plain.returncode, plain.stdout) == (0, plain.stdout)
    assert plain.stdout.count("raised") >= 4
    ops = pre.dump["ops"]
    full = [o for o in ops if o["shape"][0] == 1]
    assert [(o["calls"], o["flops"]) for o in full] == [(1, qk(3))]
    # a zero-size batch that NATTEN accepts counts zero FLOPs
    assert all(o["flops"] == 0 for o in ops if o["shape"][0] == 0)


def test_periodic_dumps_consistent_while_counting(py017, lib, tmp_path):
    """Flushes run while other threads count: every dump read must be whole and
    consistent (each op's flops = calls x flops_per_call, totals = sum of ops)."""
    code = HEAD + """
import threading
stop = time.time() + 4
def work():
    while time.time() < stop:
        F.na1d_qk(q, q, 3)
threads = [threading.Thread(target=work) for _ in range(2)]
for t in threads: t.start()
for t in threads: t.join()
os._exit(0)
"""
    script = tmp_path / "p.py"
    script.write_text(code)
    dump = tmp_path / "d.json"
    env = clean_env(LD_PRELOAD=lib, NAFLOPS_OUTPUT=str(dump), NAFLOPS_FLUSH_SECONDS="1")
    p = subprocess.Popen([py017, str(script)], env=env)
    reads = 0
    while p.poll() is None:
        if dump.exists():
            d = json.loads(dump.read_text())  # never half a file: written by rename
            for o in d["ops"]:
                assert o["flops"] == o["calls"] * o["flops_per_call"] == 2 * o["macs"]
            assert d["totals"]["flops"] == sum(o["flops"] for o in d["ops"])
            assert d["totals"]["calls"] == sum(o["calls"] for o in d["ops"])
            reads += 1
        time.sleep(0.02)
    assert p.returncode == 0 and reads >= 20
