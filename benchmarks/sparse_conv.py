"""Native sparse masked conv vs dense conv, per layer and end to end (W18-Small-v2, 512x1024).

Layers: each W18-Small-v2 conv shape at a 512x1024 input; active fractions 5..100%; clustered
and boundary-shaped masks; 1 and 2 threads. The sparse op (`adpc::masked_conv2d` through the
PyTorch op, fill + folded BN + ReLU included) is timed against the dense conv alone of the same
layer, measured in the same run: torch (oneDNN, channels-last) and XNNPACK (a one-conv .pte
run by ExecuTorch). Speed-up = dense / sparse; "% ideal" = speed-up x active fraction.

End to end: the shipped ADP-C model on synthetic frames, the dense-masked model (ADPCNet:
dense convs, mask, fill) vs the same weights in sparse mode, in PyTorch and in ExecuTorch
(a dense fp32 bundle vs a --sparse bundle); per-exit cumulative latency, the measured speed-up
and the FLOPs-predicted one; plus a torch profile of where the sparse model's time goes.

    python benchmarks/sparse_conv.py --out benchmarks/results/sparse_conv.json
    python benchmarks/sparse_conv.py --quick          # fewer shapes/fractions, 256x512 model
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from edge.atomic import write_text  # noqa: E402
from edge.kernels.torch_op import fill_taps, masked_conv2d, pack_weight  # noqa: E402
from model_zoo.masking import MaskFill  # noqa: E402

LAYERS = [  # name, cin, cout, k, stride, input H, W at a 512x1024 image
    ("branch1 3x3 18ch", 18, 18, 3, 1, 128, 256),
    ("branch2 3x3 36ch", 36, 36, 3, 1, 64, 128),
    ("branch3 3x3 72ch", 72, 72, 3, 1, 32, 64),
    ("branch4 3x3 144ch", 144, 144, 3, 1, 16, 32),
    ("down 3x3 s2 18->36", 18, 36, 3, 2, 128, 256),
    ("fuse 1x1 36->18", 36, 18, 1, 1, 64, 128),
]
FRACTIONS = (0.05, 0.10, 0.25, 0.50, 0.75, 0.90, 1.0)


def median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def make_mask(kind: str, fraction: float, h: int, w: int, seed: int) -> torch.Tensor:
    """Exactly `fraction` of pixels active: blobs (clustered) or bands along contours (boundary).

    Both threshold a smooth random field at a quantile; boundary masks keep the pixels closest
    to its 0.5 level set, like the thin uncertain bands along object edges.
    """
    if fraction >= 1.0:
        return torch.ones(1, 1, h, w)
    gen = torch.Generator().manual_seed(seed)
    field = F.interpolate(torch.rand(1, 1, max(2, h // 16), max(2, w // 16), generator=gen),
                          size=(h, w), mode="bicubic", align_corners=False)
    score = field if kind == "clustered" else (field - field.median()).abs()
    cut = torch.quantile(score.flatten(), fraction)
    return (score <= cut).float()


def dense_xnnpack(conv: torch.nn.Conv2d, x: torch.Tensor, threads: int, repeats: int) -> float:
    """One dense conv lowered to XNNPACK and run by the ExecuTorch runtime."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool
    from executorch.runtime import Runtime

    program = torch.export.export(conv.eval(), (x,))
    pte = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch()
    _unsafe_reset_threadpool(threads)  # before loading: the delegate takes the pool at init
    with tempfile.NamedTemporaryFile(suffix=".pte") as fh:
        fh.write(pte.buffer)
        fh.flush()
        method = Runtime.get().load_program(fh.name).load_method("forward")
    return median_ms(lambda: method.execute([x]), repeats)


def layer_rows(layers, fractions, threads_list, repeats: int, xnnpack: bool) -> list[dict]:
    fill = MaskFill(7)
    taps = fill_taps(*[t.detach() for t in fill.taps()])
    rows: list[dict] = []
    for layer in layers:
        rows += measure_layer(layer, taps, fractions, threads_list, repeats, xnnpack)
    return rows


def measure_layer(layer, taps, fractions, threads_list, repeats: int, xnnpack: bool) -> list[dict]:
    name, cin, cout, k, stride, h, w = layer
    gen = torch.Generator().manual_seed(0)
    conv = torch.nn.Conv2d(cin, cout, k, stride, k // 2, bias=False)
    x = torch.randn(1, cin, h, w, generator=gen)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    packed = pack_weight(conv.weight)
    scale, shift = torch.rand(cout) + 0.5, torch.randn(cout)
    ho, wo = (h + 2 * (k // 2) - k) // stride + 1, (w + 2 * (k // 2) - k) // stride + 1
    dense = functools.partial(F.conv2d, x_cl, conv.weight.detach(), None, stride, k // 2)
    rows = []
    for threads in threads_list:
        torch.set_num_threads(threads)
        with torch.no_grad():
            onednn = median_ms(dense, repeats)
            xnn = dense_xnnpack(conv, x, threads, repeats) if xnnpack else None
        for kind in ("clustered", "boundary"):
            for fraction in fractions:
                mask = make_mask(kind, fraction, ho, wo, seed=int(fraction * 1000))
                active = float(mask.mean())
                sparse = median_ms(functools.partial(
                    masked_conv2d, x_cl, packed, None, mask, taps, stride, k // 2, cout, scale,
                    shift, None, True), repeats)
                speedup = onednn / sparse
                rows.append({
                    "layer": name, "threads": threads, "mask": kind, "active": active,
                    "dense_onednn_ms": onednn, "dense_xnnpack_ms": xnn, "sparse_ms": sparse,
                    "speedup_vs_onednn": speedup, "pct_ideal_onednn": 100 * speedup * active,
                    "speedup_vs_xnnpack": xnn / sparse if xnn else None,
                    "pct_ideal_xnnpack": 100 * xnn / sparse * active if xnn else None,
                })
                print(f"  {name:<20} t{threads} {kind:<9} {active:5.0%}  dense {onednn:6.3f}"
                      f" / xnn {xnn or float('nan'):6.3f} ms  sparse {sparse:6.3f} ms  "
                      f"{speedup:5.2f}x ({100 * speedup * active:4.0f}% of ideal)",
                      file=sys.stderr, flush=True)
    return rows


# --------------------------------------------------------------------------- end to end
def _exit_times(run_exits, image, repeats: int) -> tuple[list[float], list[float]]:
    """Median cumulative ms at each exit, and the masked fractions (from the last repeat)."""
    per_exit: list[list[float]] = []
    fractions: list[float] = []
    for _ in range(repeats + 1):
        stamps, fractions = run_exits(image)
        per_exit.append(stamps)
    per_exit = per_exit[1:]  # first run warms up
    return [statistics.median(r[i] for r in per_exit) for i in range(len(per_exit[0]))], fractions


def torch_exits(model):
    from model_zoo.masking import masked_fraction

    def run(image):
        start, stamps, fractions = time.perf_counter(), [], []
        with torch.no_grad():
            for step in model.iter_exits(image, model.config.threshold):
                stamps.append((time.perf_counter() - start) * 1e3)
                if step.mask is not None:
                    fractions.append(float(masked_fraction(step.mask).mean()))
        return stamps, fractions
    return run


def runner_exits(backend, threshold):
    from edge.runtime import AnytimeRunner

    runner = AnytimeRunner(backend, threshold)

    def run(image):
        results = list(runner.run(image.numpy()))
        return [r.elapsed_ms for r in results], [r.masked_fraction for r in results[1:]]
    return run


def end_to_end(size, frames: int, threads_list, repeats: int, bundles: Path) -> dict:
    from converters.convert import convert_bundle
    from converters.export import calibration_images, load_source
    from edge.backends import open_backend
    from edge.bundle import BundleError, read_bundle
    from model_zoo.flops import exit_gflops, stage_costs
    from model_zoo.sparse import sparsify

    source = load_source(None)
    model = source.float_model.eval()
    fast = sparsify(model)
    images = calibration_images(*size, count=frames)
    costs = stage_costs(model.config, *size)
    exits = model.config.exit_stages
    full = exit_gflops(costs, exits)

    folders = {}
    for mode in ("dense", "sparse"):
        folder = bundles / f"et_fp32_{mode}_{size[0]}x{size[1]}"
        try:
            read_bundle(folder)
        except BundleError:
            print(f"converting the {mode} ExecuTorch bundle at {size[0]}x{size[1]}",
                  file=sys.stderr, flush=True)
            convert_bundle(folder, ["executorch"], "fp32", *size, sparse=mode == "sparse")
        folders[mode] = folder

    results = {"size": list(size), "frames": frames, "threshold": model.config.threshold,
               "rows": []}
    for threads in threads_list:
        torch.set_num_threads(threads)
        backends = {mode: open_backend("executorch", folders[mode], threads=threads)
                    for mode in folders}
        engines = {
            ("torch", "dense-masked"): torch_exits(model),
            ("torch", "sparse"): torch_exits(fast),
            ("executorch", "dense-masked"): runner_exits(backends["dense"], model.config.threshold),
            ("executorch", "sparse"): runner_exits(backends["sparse"], model.config.threshold),
        }
        for (engine, mode), run in engines.items():
            per_frame, fracs = [], []
            for image in images:
                stamps, fractions = _exit_times(run, image, repeats)
                per_frame.append(stamps)
                fracs.append(fractions)
            cumulative = [statistics.median(f[i] for f in per_frame) for i in range(len(exits))]
            mean_fracs = [statistics.mean(f[i] for f in fracs) for i in range(len(exits) - 1)]
            predicted = [a / b for a, b in zip(full, exit_gflops(costs, exits, mean_fracs),
                                               strict=True)]
            results["rows"].append({"engine": engine, "mode": mode, "threads": threads,
                                    "exit_ms": cumulative, "masked_fractions": mean_fracs,
                                    "flops_speedup": predicted})
            print(f"  {engine:<10} {mode:<12} t{threads}: " + " ".join(
                f"{ms:7.1f}" for ms in cumulative) + " ms", file=sys.stderr, flush=True)
    by = {(r["engine"], r["mode"], r["threads"]): r for r in results["rows"]}
    for (engine, mode, threads), row in by.items():
        if mode == "sparse":
            dense = by[(engine, "dense-masked", threads)]
            row["speedup"] = [d / s for d, s in zip(dense["exit_ms"], row["exit_ms"], strict=True)]
            row["pct_of_flops_speedup"] = [100 * m / p for m, p in
                                           zip(row["speedup"], row["flops_speedup"], strict=True)]
    torch.set_num_threads(threads_list[-1])
    results["profile"] = profile(fast, images[0])
    return results


def profile(model, image) -> list[dict]:
    """Where a sparse-mode forward spends its time, by op (torch profiler, self CPU time)."""
    with torch.no_grad():
        model(image)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            model(image)
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:12]
    return [{"op": e.key, "ms": e.self_cpu_time_total / 1e3, "calls": e.count,
             "share": e.self_cpu_time_total / total} for e in top]


def format_tables(layers: list[dict], e2e: dict | None) -> str:
    lines = ["| layer | threads | mask | active | dense oneDNN ms | dense XNNPACK ms | sparse ms "
             "| speed-up vs oneDNN | % of ideal | speed-up vs XNNPACK |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in layers:
        xnn = f"{r['dense_xnnpack_ms']:.3f}" if r["dense_xnnpack_ms"] else "-"
        sx = f"{r['speedup_vs_xnnpack']:.2f}x" if r["speedup_vs_xnnpack"] else "-"
        lines.append(f"| {r['layer']} | {r['threads']} | {r['mask']} | {r['active']:.0%} | "
                     f"{r['dense_onednn_ms']:.3f} | {xnn} | {r['sparse_ms']:.3f} | "
                     f"{r['speedup_vs_onednn']:.2f}x | {r['pct_ideal_onednn']:.0f}% | {sx} |")
    if e2e:
        lines += ["", f"End to end, {e2e['size'][0]}x{e2e['size'][1]}, {e2e['frames']} frames, "
                  f"threshold {e2e['threshold']}: cumulative ms at exits 1-4",
                  "| engine | mode | threads | exit 1 | exit 2 | exit 3 | exit 4 | speed-up "
                  "(exit 4) | FLOPs speed-up (exit 4) | % of FLOPs speed-up |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in e2e["rows"]:
            ms = " | ".join(f"{v:.1f}" for v in r["exit_ms"])
            extra = (f"{r['speedup'][-1]:.2f}x | {r['flops_speedup'][-1]:.2f}x | "
                     f"{r['pct_of_flops_speedup'][-1]:.0f}%") if "speedup" in r else \
                f"- | {r['flops_speedup'][-1]:.2f}x | -"
            lines.append(f"| {r['engine']} | {r['mode']} | {r['threads']} | {ms} | {extra} |")
        lines += ["", "Sparse-mode profile (torch, one frame, self CPU time):",
                  "| op | ms | calls | share |", "|---|---|---|---|"]
        for p in e2e["profile"]:
            lines.append(f"| {p['op']} | {p['ms']:.1f} | {p['calls']} | {p['share']:.0%} |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", default="1,2")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--size", default="512x1024", help="end-to-end input size")
    p.add_argument("--frames", type=int, default=3, help="end-to-end synthetic frames")
    p.add_argument("--e2e-repeats", type=int, default=3)
    p.add_argument("--skip-e2e", action="store_true")
    p.add_argument("--no-xnnpack", action="store_true", help="skip the XNNPACK dense baseline")
    p.add_argument("--quick", action="store_true", help="4 shapes, 4 fractions, 256x512 model")
    p.add_argument("--bundles", default="bundles/sparse_bench")
    p.add_argument("--out", default="benchmarks/results/sparse_conv.json")
    args = p.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    layers, fractions, size = LAYERS, FRACTIONS, tuple(int(v) for v in args.size.split("x"))
    if args.quick:
        layers, fractions, size = LAYERS[:4], (0.1, 0.25, 0.5, 0.9), (256, 512)
    print("per-layer:", file=sys.stderr)
    rows = layer_rows(layers, fractions, threads, args.repeats, not args.no_xnnpack)
    e2e = None
    if not args.skip_e2e:
        print("end to end:", file=sys.stderr)
        e2e = end_to_end(size, args.frames, threads, args.e2e_repeats, ROOT / args.bundles)
    table = format_tables(rows, e2e)
    print(table)
    command = "python benchmarks/sparse_conv.py " + " ".join(sys.argv[1:])
    write_text(Path(args.out), json.dumps({"command": command, "layers": rows, "end_to_end": e2e,
                                           "table": table}, indent=1))
    print(f"\nwrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
