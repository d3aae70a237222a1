"""Parity of the C rules with NATTEN 0.17's own natten.flops.

libnaflops.so exports naflops_natten_flops(kind, shape, rank, kernel, kernel_len,
heads_last, macs, out, out_len). One NATTEN 0.17 subprocess (no preload, counting
disabled) loads it with ctypes and compares it with natten.flops.fna_flop_count,
na_qk_flop_count and na_av_flop_count on thousands of random cases, FLOPs and MACs;
see natten017_parity_prog.py. The tests here read its JSON summary.
"""
import json
import subprocess
from pathlib import Path

import pytest

from conftest import clean_env

PROGRAM = Path(__file__).with_name("natten017_parity_prog.py")
SEED = 20240617
CASES = 2400
KINDS = ("fused", "qk", "av")
LAYOUTS = ("heads_last", "heads_first")
DIMS = ("1d", "2d", "3d")


@pytest.fixture(scope="module")
def summary(py017, lib):
    proc = subprocess.run([py017, str(PROGRAM), lib, str(SEED), str(CASES)],
                          env=clean_env(NAFLOPS_DISABLE=1), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_runs_against_natten_0_17_4(summary):
    assert summary["natten_version"] == "0.17.4"


def test_no_mismatch(summary):
    assert summary["cases"] >= 2000
    assert summary["compared"] == 2 * summary["cases"]  # FLOPs and MACs of every case
    assert summary["mismatch_count"] == 0, json.dumps(summary["mismatches"], indent=1)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dims", DIMS)
def test_every_combination_covered(summary, kind, layout, dims):
    assert summary["covered"].get(f"{kind}/{layout}/{dims}", 0) >= 100


def test_parameter_variety(summary):
    # int, tuple and list kernel sizes; results past 2^64; empty tensors; dilation
    # and causal masking (which natten.flops ignores, and so must the C rules).
    assert all(summary["kernel_forms"].get(f, 0) >= 500 for f in ("int", "tuple", "list"))
    assert summary["over_2_64"] >= 400
    assert summary["zero"] >= 50
    assert summary["dilated"] >= 1000
    assert summary["causal"] >= 1000


def test_rejected_by_natten_rejected_by_c(summary):
    rejected = summary["rejected"]
    assert len(rejected) == len(KINDS) * len(LAYOUTS) * 10
    for r in rejected:
        assert r["natten_error"] in ("AssertionError", "ValueError"), r
        assert r["c"] is None, r  # naflops_natten_flops returned -1


def test_invalid_c_arguments_rejected(summary):
    # Unknown kinds (3 is plain attention, not a natten.flops rule), an empty kernel,
    # and an output buffer shorter than 39 digits + NUL.
    assert summary["other_rejects"] == {
        "kind_3": None, "kind_-1": None, "out_len_39": None, "kernel_len_0": None}


def test_saturates_past_128_bits(summary):
    # Not parity: Python ints are unbounded, the library's counters are 128-bit and
    # saturate (src/nf_u128.h) rather than wrap.
    for s in summary["saturation"]:
        assert int(s["natten"]) > 2**128
        assert s["c"] == summary["u128_max"] == str(2**128 - 1)
