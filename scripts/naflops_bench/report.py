"""The bench's results summarized (medians, per-round ratios against plain) and its
table on stdout."""
from naflops_bench.config import ATEN_OPS, CONFIGS, FLEX, LABELS, MICRO, MODEL, PRELOADED, median


def summarize(results, prof):
    """Per configuration, for CPU time (the headline) and wall time: medians over runs,
    and ratios / differences to plain taken per round (run i of a configuration against
    run i of plain, which ran next to it) and then the median over rounds, so that
    drift over the bench cancels."""
    s = {"model": {}, "micro": {}}

    def vs_plain(vals, plain):
        return {"ratio": median([v / p for v, p in zip(vals, plain)]),
                "added": median([v - p for v, p in zip(vals, plain)]),
                "ratio_of_medians": median(vals) / median(plain)}

    for clock, step_key, total_key in (("cpu", "step_cpu_s", "total_cpu_s"),
                                       ("wall", "step_s", "total_s")):
        def per_run(c):
            return ([median(r["model"][step_key]) * 1e3 for r in results[c]],
                    [r["model"][total_key] / prof["steps"] * 1e3 for r in results[c]])
        plain_step, plain_total = per_run("plain")
        for c in CONFIGS:
            step, total = per_run(c)
            seen = [r["model"]["flops_seen"] for r in results[c]
                    if r["model"]["flops_seen"] is not None]
            s["model"].setdefault(c, {"flops_seen_per_step":
                                      (median(seen) / prof["steps"]) if seen else None})
            st, tt = vs_plain(step, plain_step), vs_plain(total, plain_total)
            s["model"][c][clock] = {
                "ms_per_step": median(step), "ms_per_step_runs": step,
                "ratio": st["ratio"], "ratio_of_medians": st["ratio_of_medians"],
                "added_ms": st["added"],
                "with_enter_exit_ms": median(total), "with_enter_exit_ratio": tt["ratio"],
            }
    for clock, suffix in (("cpu", "ns"), ("wall", "wall_ns")):
        for c in CONFIGS:
            m = s["micro"].setdefault(c, {"calls_per_round": results[c][0]["micro"]["calls_per_round"],
                                          "rounds": results[c][0]["micro"]["rounds"]})
            for g in ("nograd", "grad"):
                def per_run(cfg):
                    return [median(r["micro"][f"call_{g}_{suffix}"]) for r in results[cfg]]
                runs, plain = per_run(c), per_run("plain")
                vp = vs_plain(runs, plain)
                d = {"ns_per_call": median(runs), "ns_per_call_runs": runs,
                     "ratio": vp["ratio"], "ratio_of_medians": vp["ratio_of_medians"],
                     "added_ns": vp["added"],
                     "added_ns_runs": [v - p for v, p in zip(runs, plain)]}
                if c in PRELOADED:
                    # in each preloaded process: the wrapper minus the function it wraps,
                    # round by round (adjacent rounds), median over rounds, then over runs
                    diffs = [median([x - y for x, y in zip(r["micro"][f"call_{g}_{suffix}"],
                                                          r["micro"][f"unwrapped_{g}_{suffix}"])])
                             for r in results[c]]
                    d["paired_added_ns"] = median(diffs)
                    d["paired_added_ns_runs"] = diffs
                m.setdefault(clock, {})[g] = d
    fv = results["fvcore"]
    ok = [r for r in fv if r.get("ok")]
    plain_wall_step = s["model"]["plain"]["wall"]["ms_per_step"] / 1e3
    if ok:
        first = median([r["analysis_s"][0] for r in ok])
        s["fvcore"] = {"ok": True, "runs": len(ok), "clock": "wall",
                       "first_analysis_ms": first * 1e3,
                       "first_analysis_ms_runs": [r["analysis_s"][0] * 1e3 for r in ok],
                       "second_analysis_ms": median([r["analysis_s"][1] for r in ok]) * 1e3,
                       "x_plain_step": first / plain_wall_step, "macs": ok[0]["macs"],
                       "flops_equiv": 2 * ok[0]["macs"]}
    else:
        s["fvcore"] = {"ok": False, "error": fv[0].get("error") if fv else "not run"}
    return s


def summarize_flex(flex):
    """The Flex step (CPU time, x plain per round, median over rounds) and each aten
    op's added ns (its best over all rounds of all runs minus plain's)."""
    plain = flex["plain"]
    out = {"model": FLEX, "step": {}, "ops": {}, "torch": plain[0]["torch"],
           "natten": plain[0]["natten"]}
    for c in CONFIGS:
        errors = [r["flex"]["error"] for r in flex[c] if "error" in r["flex"]]
        if errors:
            out["step"][c] = {"error": errors[0]}
        else:
            mine = [median(r["flex"]["step_cpu_s"]) * 1e3 for r in flex[c]]
            base = [median(r["flex"]["step_cpu_s"]) * 1e3 for r in plain]
            out["step"][c] = {"ms_per_step": median(mine), "ms_per_step_runs": mine,
                              "ratio": median([m / b for m, b in zip(mine, base)])}
        for op, _ in ATEN_OPS:
            # Best of all rounds of all runs: a few hundred ns are below what a shared
            # machine's rounds keep apart otherwise; the per-round medians stay in the JSON.
            mine = [r["ops"][op] for r in flex[c]]
            base = [r["ops"][op] for r in plain]
            out["ops"].setdefault(op, {})[c] = {
                "ns": min(mine), "ns_runs": mine, "added_ns": min(mine) - min(base),
                "ratio": min(mine) / min(base),
                "added_ns_median_of_rounds": median([m - b for m, b in zip(mine, base)])}
    return out


def flex_table(fx, p, add):
    f = fx["model"]
    add("")
    add(f"4. Flex step (op-heavy), torch {fx['torch']}: {f['blocks']} block (LayerNorm, NATTEN {fx['natten']} "
        f"NeighborhoodAttention2D dim {f['dim']}, {f['heads']} heads, kernel {f['kernel']} "
        f"through Flex's CPU eager path; LayerNorm, MLP), input {'x'.join(map(str, f['input']))}; "
        f"forward + backward + SGD; {p['flex_warmup']} warm-up + {p['flex_steps']} timed steps per run")
    add(f"   {'configuration':28s} {'CPU ms/step':>11s} {'x plain':>7s}")
    for c in CONFIGS:
        r = fx["step"][c]
        if "error" in r:
            add(f"   {LABELS[c]:28s} {'cannot run':>11s}   ({r['error'][:90]})")
        else:
            add(f"   {LABELS[c]:28s} {r['ms_per_step']:11.2f} {r['ratio']:7.3f}")
    add("")
    add(f"5. single aten ops, torch {fx['torch']}: best of {p['op_rounds']} rounds of "
        f"{p['op_calls']} calls in each of {p['runs']} runs (FlopCounterMode, profiler: a tenth "
        f"of the calls), wall ns per call; added = best minus plain's best")
    add(f"   {'configuration':28s}" + "".join(f" {op + (' (counted)' if c else ''):>24s}"
                                         for op, c in ATEN_OPS))
    for c in CONFIGS:
        cells = []
        for op, _ in ATEN_OPS:
            r = fx["ops"][op][c]
            cells.append(f"{r['ns']:8.0f}" + (f" ({r['added_ns']:+7.0f})" if c != "plain" else " " * 10))
        add(f"   {LABELS[c]:28s}" + "".join(f" {x:>24s}" for x in cells))


def fmt_flops(v):
    if v is None:
        return "-"
    for unit, div in (("GFLOP", 1e9), ("MFLOP", 1e6), ("kFLOP", 1e3)):
        if v >= div:
            return f"{v / div:.1f} {unit}"
    return f"{v:.0f} FLOP"


def table(report):
    p, s, meta = report["profile"], report["summary"], report["meta"]
    m, mc, chk = MODEL, MICRO, report["checks"]
    lines = []
    add = lines.append
    add(f"naflops bench ({report['mode']}): torch {meta['torch']}, NATTEN {meta['natten']} "
        f"(CPU kernels, unfused ops), {meta['cpus']} CPUs, torch threads {p['threads']}")
    add(f"library {meta['lib']} (sha256 {meta['lib_sha256'][:12]}, {meta['git']})")
    add(f"medians over {p['runs']} process runs per configuration, interleaved (round-robin); "
        f"x plain and added = median over rounds of (run / plain run of the same round); "
        f"CPU = user+system time of the process, all threads")
    share, load = meta["cpu_share"], meta["loadavg_1min"]
    add(f"contention: the workers got {share['median']:.0%} of a CPU while stepping the model "
        f"(median; lowest run {share['min']:.0%}); 1-min load average median {load['median']:.2f} "
        f"(this bench adds about {p['threads']})"
        + ("\n   WARNING: other work competed for the CPUs: wall times are unreliable, CPU "
           "times less so" if share["min"] < 0.9 * p["threads"] else ""))
    add(f"preload check: {'ok' if chk['ok'] else 'FAILED'}, {chk['dumps_checked']} dumps: "
        + chk["detail"])
    add("")
    add(f"1. NA transformer: {m['blocks']} blocks (LayerNorm, NeighborhoodAttention2D dim "
        f"{m['dim']}, {m['heads']} heads, kernel {m['kernel']}; LayerNorm, MLP), input "
        f"{'x'.join(map(str, m['input']))}; forward + backward + SGD step; "
        f"{p['warmup']} warm-up + {p['steps']} timed steps per run")
    add(f"   {'configuration':28s} {'CPU ms/step':>11s} {'x plain':>7s} {'+enter/exit':>11s} "
        f"{'x plain':>7s} {'wall ms/step':>12s} {'x plain':>7s}   FLOPs/step it reports")
    for c in CONFIGS:
        r = s["model"][c]
        cpu, wall = r["cpu"], r["wall"]
        seen = fmt_flops(r["flops_seen_per_step"])
        if c == "plain":
            seen = "-"
        elif c == "preload":
            seen = fmt_flops(chk.get("model_flops_per_step")) + " (NATTEN ops, from the dump)"
        elif c == "observer":
            other = chk.get("observer_other_flops_per_step")
            seen = (fmt_flops(chk.get("model_flops_per_step") + other) + " (NATTEN + "
                    + fmt_flops(other) + " other, from the dump"
                    + (", other = FlopCounterMode's" if chk.get("observer_matches_fcm") else "")
                    + ")")
        elif c == "flopcountermode":
            seen += " (misses NATTEN 0.17 ops)"
        add(f"   {LABELS[c]:28s} {cpu['ms_per_step']:11.1f} {cpu['ratio']:7.3f} "
            f"{cpu['with_enter_exit_ms']:11.1f} {cpu['with_enter_exit_ratio']:7.3f} "
            f"{wall['ms_per_step']:12.1f} {wall['ratio']:7.3f}   {seen}")
    fv = s["fvcore"]
    if fv["ok"]:
        add(f"   {LABELS['fvcore']}: one analysis (jit trace, forward only, wall) "
            f"{fv['first_analysis_ms']:.0f} ms (first in a process; second {fv['second_analysis_ms']:.0f} ms) "
            f"= {fv['x_plain_step']:.2f} x a plain training step; reports {fv['macs'] / 1e6:.1f} M MACs "
            f"= {fmt_flops(fv['flops_equiv'])} forward, NATTEN ops included")
    else:
        add(f"   {LABELS['fvcore']}: FAILED: {fv['error']}")
    add("")
    add(f"2. micro: natten.functional.na1d_qk(q, k, {mc['kernel']}), q, k "
        f"{'x'.join(map(str, mc['shape']))} float32; per grad mode and run {p['rounds']} rounds x "
        f"{p['calls']} calls (FlopCounterMode, profiler: {max(1, p['rounds'] // 4)} rounds) after "
        f"{p['micro_warmup']} warm-up calls; CPU ns per call")
    add(f"   {'configuration':28s} {'no grad ns':>10s} {'x plain':>7s} {'added ns':>9s}   "
        f"{'requires_grad ns':>16s} {'x plain':>7s} {'added ns':>9s}   {'wall: added ns':>14s}")
    for c in CONFIGS:
        a, b = s["micro"][c]["cpu"]["nograd"], s["micro"][c]["cpu"]["grad"]
        wa, wb = s["micro"][c]["wall"]["nograd"], s["micro"][c]["wall"]["grad"]
        added = (lambda d: d["added_ns"]) if c != "plain" else (lambda d: 0.0)
        add(f"   {LABELS[c]:28s} {a['ns_per_call']:10.0f} {a['ratio']:7.3f} {added(a):9.0f}   "
            f"{b['ns_per_call']:16.0f} {b['ratio']:7.3f} {added(b):9.0f}   "
            f"{added(wa):6.0f} / {added(wb):<6.0f}")
    r = s["micro"]["preload"]["cpu"]
    add(f"   naflops, added CPU time per intercepted call: preload minus plain (across processes) "
        f"{r['nograd']['added_ns']:.0f} ns without grad, {r['grad']['added_ns']:.0f} ns with requires_grad;")
    add(f"   paired in each preloaded process (wrapper minus its __wrapped__ original): "
        f"{r['nograd']['paired_added_ns']:.0f} ns without grad, "
        f"{r['grad']['paired_added_ns']:.0f} ns with requires_grad")
    add("")
    add(f"3. start-up: python -c 'import torch, natten', {p['startup_runs']} runs each, interleaved")
    add(f"   {'interpreter':34s} {'CPU s plain':>11s} {'preload':>8s} {'ratio':>6s} {'added ms':>8s}   "
        f"{'wall s plain':>12s} {'preload':>8s} {'ratio':>6s}   {'import stmt CPU ratio':>21s}")
    for name, st in report["startup"].items():
        c, w, i = st["cpu"], st["wall"], st["import_cpu"]
        add(f"   {name:34s} {c['plain_s']:11.3f} {c['preload_s']:8.3f} {c['ratio']:6.3f} "
            f"{c['added_ms']:8.0f}   {w['plain_s']:12.3f} {w['preload_s']:8.3f} {w['ratio']:6.3f}   "
            f"{i['ratio']:21.3f}")
    if report.get("flex"):
        flex_table(report["flex"], p, add)
    add("")
    add(f"total bench time {report['elapsed_s']:.0f} s; JSON: {report['out']}")
    return "\n".join(lines)
