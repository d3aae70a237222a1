"""The program scripts/gpu-check runs under the preload on a CUDA machine, and
(--check DUMP) the checker of what the preload counted, from the shapes alone."""
import json
import math
import sys

CASES = [  # (op, q shape [B, *spatial, H, D], kernel)
    ("na1d", (2, 1024, 8, 64), (31,)),
    ("na2d", (2, 48, 48, 8, 64), (7, 7)),
    ("na3d", (1, 8, 24, 24, 4, 128), (3, 7, 7)),
]


def expected():
    exp = {}
    for dtype in ("float16", "bfloat16"):
        for op, shape, kernel in CASES:
            b, *spatial, h, d = shape
            f = 4 * b * h * math.prod(spatial) * math.prod(kernel) * d
            exp[(op, "forward", dtype)] = f
            exp[(op, "backward", dtype)] = 2 * f
        exp[("attention", "forward", dtype)] = 2 * 2 * 8 * 2048 * 2048 * (64 + 64)
    return exp


def run():
    import torch
    import natten

    for dtype in (torch.float16, torch.bfloat16):
        for op, shape, kernel in CASES:
            q, k, v = (torch.randn(shape, device="cuda", dtype=dtype, requires_grad=True)
                       for _ in range(3))
            out = getattr(natten, op)(q, k, v, kernel_size=kernel)
            out.sum().backward()
        q = torch.randn(2, 2048, 8, 64, device="cuda", dtype=dtype)
        natten.attention(q, q, q)
    torch.cuda.synchronize()
    print("gpu program done")


def check(path):
    with open(path) as f:
        dump = json.load(f)
    got = {(o["op"], o["pass"], o["dtype"]): o["flops"] for o in dump["ops"]}
    exp = expected()
    bad = {k: (got.get(k), v) for k, v in exp.items() if got.get(k) != v}
    for o in dump["ops"]:
        print(f"{o['op']:10} {o['pass']:8} {o['dtype']:8} backend={o['backend']} flops={o['flops']}")
    if bad or len(got) != len(exp):
        print("gpu-check: MISMATCH (got, expected):", bad, "extra:", set(got) - set(exp))
        return 1
    print(f"gpu-check: all {len(exp)} counts match the rules")
    return 0


if __name__ == "__main__":
    sys.exit(check(sys.argv[2]) if sys.argv[1:2] == ["--check"] else run())
