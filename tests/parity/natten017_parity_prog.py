"""Parity program, run by test_natten017_parity.py with the NATTEN 0.17 interpreter.

Usage: python natten017_parity_prog.py LIBNAFLOPS SEED COUNT

Loads libnaflops.so with ctypes (no preload; NAFLOPS_DISABLE=1 in the environment)
and compares `naflops_natten_flops` with NATTEN 0.17's own natten.flops on COUNT
random cases (FLOPs and MACs each), plus fixed cases that natten.flops rejects and
cases past 2^128. Prints one JSON summary on stdout.
"""
import ctypes
import json
import math
import random
import sys

import torch
import natten
from natten import flops as nf

KINDS = {"fused": 0, "qk": 1, "av": 2}
U128_MAX = 2**128 - 1


class CRules:
    def __init__(self, path):
        self.lib = ctypes.CDLL(path)
        fn = self.lib.naflops_natten_flops
        fn.restype = ctypes.c_int
        fn.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_longlong), ctypes.c_int,
                       ctypes.POINTER(ctypes.c_longlong), ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self.fn = fn

    def __call__(self, kind, shape, kernel, heads_last, macs, out_len=64):
        """FLOPs/MACs as an int, or None where the C side returns -1."""
        kernel = [kernel] if isinstance(kernel, int) else list(kernel)
        s = (ctypes.c_longlong * max(len(shape), 1))(*shape)
        k = (ctypes.c_longlong * max(len(kernel), 1))(*kernel)
        out = ctypes.create_string_buffer(max(out_len, 1))
        rc = self.fn(kind, s, len(shape), k, len(kernel), int(heads_last), int(macs), out, out_len)
        if rc != 0:
            assert rc == -1, rc
            return None
        return int(out.value.decode())


def natten_count(kind, shape, kernel, dilation, is_causal, heads_last, macs):
    """What NATTEN 0.17's natten.flops returns (raises where it rejects)."""
    common = dict(kernel_size=kernel, dilation=dilation, is_causal=is_causal,
                  is_heads_last=heads_last, return_macs=macs)
    if kind == "fused":
        return nf.fna_flop_count(shape, shape, shape, **common)
    if kind == "qk":
        return nf.na_qk_flop_count(shape, shape, **common)
    # av: natten reads the value's shape; the attention tensor's shape is not used.
    return nf.na_av_flop_count(shape, shape, **common)


def random_dim(rng, huge):
    if huge:
        return rng.randint(1, 2**rng.randint(8, 24))
    r = rng.random()
    if r < 0.015:
        return 0  # empty tensors: 0 FLOPs on both sides
    if r < 0.6:
        return rng.randint(1, 16)
    return rng.randint(1, 512)


def random_case(rng, kind, heads_last, na_dim, huge):
    batch, heads, dim = (random_dim(rng, huge) for _ in range(3))
    spatial = [random_dim(rng, huge) for _ in range(na_dim)]
    shape = [batch, *spatial, heads, dim] if heads_last else [batch, heads, *spatial, dim]
    ks = [rng.choice([1, 3, 5, 7, 9, 13, 31]) if not huge else rng.randint(1, 2**12)
          for _ in range(na_dim)]
    form = rng.choice(["int", "tuple", "list"])
    kernel = ks[0] if form == "int" else tuple(ks) if form == "tuple" else list(ks)
    d = [rng.randint(1, 8) for _ in range(na_dim)]
    dilation = rng.choice([None, d[0], tuple(d), list(d)])
    c = [rng.random() < 0.5 for _ in range(na_dim)]
    is_causal = rng.choice([None, c[0], tuple(c), list(c)])
    shape_type = rng.choice(["tuple", "list", "size"])
    return dict(kind=kind, heads_last=heads_last, na_dim=na_dim, huge=huge, shape=shape,
                shape_type=shape_type, kernel=kernel, kernel_form=form, dilation=dilation,
                is_causal=is_causal)


def as_list(value, default):
    """A dilation / is_causal argument (None, scalar or sequence) as a list."""
    if value is None:
        return [default]
    return [value] if isinstance(value, (int, bool)) else list(value)


def as_shape(case):
    s = case["shape"]
    return tuple(s) if case["shape_type"] == "tuple" else list(s) if case["shape_type"] == "list" \
        else torch.Size(s)


def generate(seed, count):
    rng = random.Random(seed)
    combos = [(k, hl, d) for k in KINDS for hl in (True, False) for d in (1, 2, 3)]
    cases = []
    while len(cases) < count:
        for kind, heads_last, na_dim in combos:
            huge = len(cases) % 10 == 9  # every tenth case: results past 2^64
            for _ in range(100):
                case = random_case(rng, kind, heads_last, na_dim, huge)
                if not huge:
                    break
                macs = natten_count(kind, case["shape"], case["kernel"], None, None,
                                    heads_last, True)
                if 2**64 < macs < 2**126:  # MACs and FLOPs past 64 bits, within 128
                    break
            else:
                raise RuntimeError("could not draw a huge case")
            cases.append(case)
    return cases[:count]


def rejected_cases():
    """(kind, shape, kernel, heads_last) that natten.flops rejects."""
    out = []
    for kind in KINDS:
        for heads_last in (True, False):
            # Wrong rank: natten accepts ranks 4, 5 and 6 only.
            for shape in ([2, 8, 4], [2, 4, 4, 4, 4, 4, 8], [2, 16], [8]):
                out.append((kind, shape, 3, heads_last))
            # Kernel tuples whose length is not the number of spatial dims (length 1
            # is left out: the C API reads a length-1 kernel as an int).
            for shape, kernel in (([2, 16, 4, 8], (3, 3)), ([2, 16, 4, 8], (3, 3, 3)),
                                  ([2, 8, 8, 4, 8], (3, 3, 3)),
                                  ([2, 4, 4, 4, 2, 8], (3, 3)),
                                  ([2, 4, 4, 4, 2, 8], (3, 3, 3, 3)),
                                  ([2, 8, 8, 4, 8], (3, 3, 3, 3))):
                out.append((kind, shape, kernel, heads_last))
    return out


def main():
    lib_path, seed, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    c = CRules(lib_path)
    cases = generate(seed, count)
    mismatches, covered, kernel_forms = [], {}, {}
    n_compared = n_over_64 = n_zero = n_dilated = n_causal = 0
    for case in cases:
        kind, hl = case["kind"], case["heads_last"]
        key = f"{kind}/{'heads_last' if hl else 'heads_first'}/{case['na_dim']}d"
        covered[key] = covered.get(key, 0) + 1
        kernel_forms[case["kernel_form"]] = kernel_forms.get(case["kernel_form"], 0) + 1
        n_dilated += any(x != 1 for x in as_list(case["dilation"], 1))
        n_causal += any(as_list(case["is_causal"], False))
        for macs in (False, True):
            want = natten_count(kind, as_shape(case), case["kernel"], case["dilation"],
                                case["is_causal"], hl, macs)
            # The same problem without dilation or causal masking: must not differ.
            plain = natten_count(kind, case["shape"], case["kernel"], 1, False, hl, macs)
            got = c(KINDS[kind], case["shape"], case["kernel"], hl, macs)
            n_compared += 1
            n_over_64 += want >= 2**64
            n_zero += want == 0
            if got != want or plain != want:
                mismatches.append(dict(case, macs=macs, natten=str(want), c=str(got),
                                       natten_plain=str(plain)))

    rejected = []
    for kind, shape, kernel, hl in rejected_cases():
        try:
            natten_count(kind, shape, kernel, None, None, hl, False)
            natten_error = None
        except (AssertionError, ValueError) as e:
            natten_error = type(e).__name__
        got = c(KINDS[kind], shape, kernel, hl, False)
        rejected.append(dict(kind=kind, shape=shape, kernel=kernel, heads_last=hl,
                             natten_error=natten_error, c=got))

    # Arguments outside the NATTEN rules: unknown kinds, a too small output buffer.
    other_rejects = {
        "kind_3": c(3, [2, 16, 4, 8], [3], True, False),
        "kind_-1": c(-1, [2, 16, 4, 8], [3], True, False),
        "out_len_39": c(0, [2, 16, 4, 8], [3], True, False, out_len=39),
        "kernel_len_0": c(0, [2, 16, 4, 8], [], True, False),
    }

    # Past 2^128 NATTEN's Python ints keep growing; the C counter saturates (by design).
    big = 2**62
    saturation = []
    for kind in KINDS:
        shape = [big, big, big, 4, 8]
        saturation.append(dict(kind=kind, natten=str(natten_count(kind, shape, 7, None, None,
                                                                 True, False)),
                               c=str(c(KINDS[kind], shape, [7], True, False))))

    print(json.dumps(dict(
        natten_version=natten.__version__, seed=seed, cases=len(cases), compared=n_compared,
        over_2_64=n_over_64, zero=n_zero, dilated=n_dilated, causal=n_causal,
        covered=covered, kernel_forms=kernel_forms, mismatches=mismatches[:20],
        mismatch_count=len(mismatches), rejected=rejected, other_rejects=other_rejects,
        saturation=saturation, u128_max=str(U128_MAX))))


if __name__ == "__main__":
    main()
