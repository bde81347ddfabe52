"""The dense baseline, two ways, next to each exit of the anytime bundle, in one run.

"The same network without exits on the same backend, run to completion":
- run-to-completion (`edge.bench.run_to_completion`, also in `adpc bench`): the bundle's own
  stage methods back to back with an all-ones mask and no host work between them. The stage
  graphs still compute exit heads 1-3 and the masked convs' (zero-weighted) fill.
- no-exit program: the same trained weights exported again as ONE ExecuTorch method with exit
  heads 1-3 deleted and no masks at all (backbone + the final head only), XNNPACK-delegated
  like the bundle; int8 by post-training quantisation with the bundle's quantizer config (the
  bundle's int8 stages come from the QAT model, so int8 logits differ slightly; latency is
  what is compared). Cached beside the bundle folder: `noexit_<precision>_<H>x<W>.pte`.

Interleaved per frame: the CA runner, run-to-completion, the no-exit program. Prints a table,
writes JSON.

    python benchmarks/dense_baseline.py --bundle bundles/bench/int8_256x512 --precision int8 \
        --threads 1 --frames 4 --repeats 10 --out benchmarks/results/dense_baseline.json
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge.atomic import write_text  # noqa: E402
from edge.backends import open_backend  # noqa: E402
from edge.bench import run_to_completion  # noqa: E402
from edge.bundle import read_bundle  # noqa: E402
from edge.preprocess import to_input  # noqa: E402
from edge.runtime import AnytimeRunner  # noqa: E402
from edge.sources import SyntheticDriveSource  # noqa: E402
from model_zoo import create_model  # noqa: E402
from model_zoo.adpc import NUM_STAGES  # noqa: E402
from model_zoo.flops import conv_costs  # noqa: E402


class NoExitNet(nn.Module):
    """The ADP-C backbone and its final head: exit heads 1..N-1 deleted, no masks."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.m = copy.deepcopy(model).eval()
        for k in range(1, NUM_STAGES):
            if hasattr(self.m, f"exit{k}"):
                delattr(self.m, f"exit{k}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        state = x
        raw = None
        for k in range(1, NUM_STAGES + 1):
            state, raw = self.m.run_stage(k, state, None)
        assert raw is not None
        return raw


def build_noexit(path: Path, precision: str, height: int, width: int) -> Path:
    if path.is_file():
        return path
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    start = time.perf_counter()
    net = NoExitNet(create_model("w18_small_v2", pretrained=True))
    example = (torch.zeros(1, 3, height, width),)
    with torch.no_grad():
        program = torch.export.export(net, example)
        if precision == "int8":
            from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

            from converters.export import calibration_images
            from model_zoo.quantize import make_quantizer

            gm = prepare_pt2e(program.module(), make_quantizer(is_qat=False))
            for image in calibration_images(height, width):
                gm(image)
            program = torch.export.export(convert_pt2e(gm), example)
        et = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
        buffer = et.to_executorch().buffer
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(buffer)
    tmp.replace(path)
    print(f"exported {path} in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return path


def exit_head_share(height: int, width: int) -> float:
    """GFLOPs share of exit heads 1..N-1 in the dense ADP-C network (no fills)."""
    model = create_model("w18_small_v2")
    convs = conv_costs(model.config, height, width)
    heads = sum(c.macs for c in convs if c.name.split(".")[0] in
                {f"exit{k}" for k in range(1, NUM_STAGES)})
    return heads / sum(c.macs for c in convs)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", default="bundles/bench/int8_256x512")
    p.add_argument("--precision", default="int8")
    p.add_argument("--backend", default="executorch")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--frames", type=int, default=4)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--out", default="benchmarks/results/dense_baseline.json")
    args = p.parse_args()
    from executorch.runtime import Runtime

    manifest = read_bundle(args.bundle)
    h, w = manifest.input.height, manifest.input.width
    pte = build_noexit(Path(args.bundle).parent / f"noexit_{args.precision}_{h}x{w}.pte",
                       args.precision, h, w)
    with SyntheticDriveSource() as source:
        frames = [to_input(f.image, manifest.input)[0]
                  for _, f in zip(range(args.frames), source, strict=False)]
    ca_ms: list[list[float]] = [[] for _ in range(manifest.num_exits)]
    rtc_ms: list[float] = []
    noexit_ms: list[float] = []
    agreement, max_abs = [], []
    with open_backend(args.backend, args.bundle, args.precision, threads=args.threads) as backend:
        method = Runtime.get().load_program(pte).load_method("forward")
        runner = AnytimeRunner(backend)

        def noexit(x: np.ndarray) -> np.ndarray:
            return method.execute([torch.from_numpy(x)])[0].numpy()

        for x in frames:  # warm-up and parity of the two dense forms
            runner.run_frame(x)
            ref, mine = run_to_completion(backend, x), noexit(x)
            agreement.append(float((ref.argmax(1) == mine.argmax(1)).mean()))
            max_abs.append(float(np.abs(ref - mine).max()))
        for _ in range(args.repeats):
            for x in frames:
                result = runner.run_frame(x)
                for e, ms in zip(result.exits, np.cumsum([e.stage_ms for e in result.exits]),
                                 strict=True):
                    ca_ms[e.exit - 1].append(float(ms))
                t0 = time.perf_counter()
                run_to_completion(backend, x)
                rtc_ms.append((time.perf_counter() - t0) * 1e3)
                t0 = time.perf_counter()
                noexit(x)
                noexit_ms.append((time.perf_counter() - t0) * 1e3)
    rtc, nox = statistics.median(rtc_ms), statistics.median(noexit_ms)
    share = exit_head_share(h, w)
    rows = [{"exit": i + 1, "ms": statistics.median(v), "noexit_ratio": nox / statistics.median(v),
             "rtc_ratio": rtc / statistics.median(v)} for i, v in enumerate(ca_ms) if v]
    print(f"{args.backend} {args.precision}, {args.threads} thread(s), {h}x{w}, "
          f"{len(frames)} frames x {args.repeats} repeats (medians, ms)")
    print(f"{'exit':>4} {'CA cumulative':>14} {'no-exit / exit':>15} {'rtc / exit':>11}")
    for r in rows:
        print(f"{r['exit']:>4} {r['ms']:>14.2f} {r['noexit_ratio']:>14.2f}x "
              f"{r['rtc_ratio']:>10.2f}x")
    print(f"no-exit program: {nox:.2f} ms (p90 {np.percentile(noexit_ms, 90):.2f}); "
          f"run-to-completion: {rtc:.2f} ms (p90 {np.percentile(rtc_ms, 90):.2f}); "
          f"exit heads 1-3 are {share:.1%} of the dense GFLOPs")
    print(f"no-exit vs run-to-completion final logits: argmax agreement "
          f"{np.mean(agreement):.4f}, max |diff| {max(max_abs):.2e}")
    write_text(args.out, json.dumps({
        "command": " ".join(sys.argv), "backend": args.backend, "precision": args.precision,
        "threads": args.threads, "size": [h, w], "frames": len(frames),
        "repeats": args.repeats, "exits": rows, "noexit_ms": nox,
        "noexit_p90_ms": float(np.percentile(noexit_ms, 90)), "run_to_completion_ms": rtc,
        "run_to_completion_p90_ms": float(np.percentile(rtc_ms, 90)),
        "exit_head_gflops_share": share, "parity_argmax_agreement": float(np.mean(agreement)),
        "parity_max_abs": max(max_abs)}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
