"""The paper's speed-up claim on this machine: HRNet-W48 ADP-C vs W48 without exits, 1024x2048.

The paper measured 1.48x wall-clock (CPU, 16 threads) for the final exit of W48 ADP-C over
its non-anytime baseline, against 1.80x by FLOPs, at Cityscapes' average masked fractions of
19.3 / 38.4 / 63.0% after exits 1-3. Here: the same architecture (random weights; timing only),
fp32 in PyTorch on both sides (same runtime and precision): the plain W48 HRNet (no exits, no
masks, oneDNN convs, channels-last) against W48 ADP-C in sparse mode (model_zoo.sparse: every
masked conv is the native block-sparse kernel, fill and BN/residual/ReLU fused), driven stage
by stage with spatially coherent nested masks at exactly those fractions (a smooth random field
thresholded at three quantiles, so a pixel skipped after exit 1 stays skipped). Interleaved,
medians over repeats; prints a table and writes JSON.

    python benchmarks/paper_w48.py --threads 1,2 --repeats 3 --out benchmarks/results/paper_w48.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from edge.atomic import write_text
from model_zoo import create_model
from model_zoo.adpc import NUM_STAGES
from model_zoo.flops import exit_gflops, stage_costs
from model_zoo.sparse import sparsify

PAPER_MASKED = (0.193, 0.384, 0.630)
PAPER_SPEEDUP, PAPER_FLOPS_SPEEDUP = 1.48, 1.80


def nested_masks(height: int, width: int, masked: tuple[float, ...], seed: int = 0
                 ) -> list[torch.Tensor]:
    """1 = compute. Thresholds of one smooth field: exactly `masked[i]` skipped, nested."""
    gen = torch.Generator().manual_seed(seed)
    field = F.interpolate(torch.rand(1, 1, height // 16, width // 16, generator=gen),
                          size=(height, width), mode="bicubic", align_corners=False)
    return [(field > torch.quantile(field.flatten(), f)).float() for f in masked]


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def run_chain(model, image: torch.Tensor, masks: list[torch.Tensor] | None) -> None:
    state = image
    for k in range(1, NUM_STAGES + 1):
        mask = None if k == 1 or masks is None else masks[k - 2]
        state, _ = model.run_stage(k, state, mask)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="1024x2048")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default="benchmarks/results/paper_w48.json")
    args = p.parse_args()
    height, width = (int(v) for v in args.size.split("x"))
    plain = create_model("w48", exits="none", threshold=None).eval()
    adpc = create_model("w48", head_channels=128)
    sparse = sparsify(adpc)
    cl = torch.channels_last
    plain = plain.to(memory_format=cl)
    image = torch.randn(1, 3, height, width).contiguous(memory_format=cl)
    masks = nested_masks(height // 4, width // 4, PAPER_MASKED)
    measured = [1.0 - float(m.mean()) for m in masks]
    costs = stage_costs(adpc.config, height, width)
    flops_adpc = exit_gflops(costs, adpc.config.exit_stages, measured)[-1]
    flops_plain = sum(c.gflops(1.0) for c in stage_costs(plain.config, height, width))
    rows = []
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        base, anytime = [], []
        with torch.no_grad():
            run_chain(sparse, image, masks)  # warm-up: builds the kernel, touches memory
            run_chain(plain, image, None)
            for _ in range(args.repeats):
                base.append(timed(lambda: run_chain(plain, image, None)))
                anytime.append(timed(lambda: run_chain(sparse, image, masks)))
        b, a = statistics.median(base), statistics.median(anytime)
        rows.append({"threads": threads, "noexit_ms": b, "adpc_final_exit_ms": a,
                     "speedup": b / a, "flops_speedup": flops_plain / flops_adpc,
                     "share_of_flops_speedup": (b / a) / (flops_plain / flops_adpc)})
        print(f"{threads} thread(s): W48 without exits {b:.0f} ms, W48 ADP-C sparse final exit "
              f"{a:.0f} ms: {b / a:.2f}x (FLOPs {flops_plain / flops_adpc:.2f}x; paper "
              f"{PAPER_SPEEDUP}x of {PAPER_FLOPS_SPEEDUP}x)", flush=True)
    write_text(args.out, json.dumps({
        "command": " ".join(sys.argv), "size": [height, width], "masked_fractions": measured,
        "gflops_noexit": flops_plain, "gflops_adpc_final_exit": flops_adpc,
        "paper_speedup": PAPER_SPEEDUP, "paper_flops_speedup": PAPER_FLOPS_SPEEDUP,
        "rows": rows}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
