"""The `adpc` command.

It sits in `converters`, the top of the dependency graph, because it reaches every part
(training, conversion, runtime); `edge` itself never imports training code. Each subcommand
imports what it needs lazily so `adpc --help` stays fast.

User errors (bad sizes, bad files, bad flags) print one line and exit 2; set ADPC_DEBUG=1 for
the traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from model_zoo.registry import list_models

DEFAULT_MODEL = "w18_small_v2"


class UsageError(ValueError):
    """A flag value that cannot be used; the message names the fix."""


def parse_size(text: str) -> tuple[int, int]:
    """'1024x2048' -> (1024, 2048) (height x width)."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"size {text!r} is not HEIGHTxWIDTH, e.g. 1024x2048") from None
    if height <= 0 or width <= 0:
        raise UsageError(f"size {text!r} must be positive")
    return height, width


def parse_fractions(text: str) -> list[float]:
    """'0.193,0.384,0.63' -> masked fractions after exits 1..3."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"--masked {text!r} is not a comma list of numbers in [0, 1]") from None
    if not 1 <= len(values) <= 3 or any(not 0.0 <= v <= 1.0 for v in values):
        raise UsageError(f"--masked takes 1 to 3 fractions in [0, 1] (after exits 1-3), got {text}")
    return values


# --------------------------------------------------------------------------------- flops
def add_flops(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "flops",
        help="GFLOPs per exit with the paper's accounting",
        description="Cumulative GFLOPs (MACs / 2^30, convs only) at each exit, for the plain "
        "early-exit model and, with --masked, for ADP-C with those masked fractions.",
    )
    p.add_argument("--model", default=DEFAULT_MODEL, choices=list_models())
    p.add_argument("--exits", default="rh", choices=["rh", "ee", "none"],
                   help="rh: ADP-C redesigned heads; ee: 1x1 HRNet heads; none: plain HRNet")
    p.add_argument("--head-channels", type=int, default=None,
                   help="hidden width of the RH exits (default 64 for W18, 128 for W32/W48)")
    p.add_argument("--num-classes", type=int, default=19)
    p.add_argument("--size", default="1024x2048", help="input HEIGHTxWIDTH (default 1024x2048)")
    p.add_argument("--masked", default=None,
                   help="masked (skipped) pixel fractions after exits 1-3, e.g. 0.193,0.384,0.63")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run_flops)


def run_flops(args: argparse.Namespace) -> int:
    from model_zoo.flops import flops_report
    from model_zoo.registry import model_config

    height, width = parse_size(args.size)
    masked = parse_fractions(args.masked) if args.masked else None
    config = model_config(
        args.model, num_classes=args.num_classes, exits=args.exits,
        head_channels=args.head_channels,
    )
    if masked is not None and config.exits == "none":
        raise UsageError("--masked needs early exits: drop --exits none")
    report = flops_report(config, height, width, masked)
    print(json.dumps(report) if args.json else format_flops(report))
    return 0


def format_flops(report: dict) -> str:
    h, w = report["size"]
    lines = [
        f"{report['model']} ({report['exits_type']} exits, {report['head_channels']} head "
        f"channels) at {h}x{w}: {report['params'] / 1e6:.3f}M params",
        "",
    ]
    adaptive = report.get("adaptive_exits")
    header = f"{'exit':>4}  {'GFLOPs (no CA)':>14}"
    if adaptive:
        header += f"  {'GFLOPs (ADP-C)':>14}  {'masked after':>12}"
    lines.append(header)
    fractions = report.get("masked_fractions", [])
    for i, row in enumerate(report["exits"]):
        line = f"{row['exit']:>4}  {row['gflops']:>14.1f}"
        if adaptive:
            after = f"{fractions[i]:.1%}" if i < len(fractions) else "-"
            line += f"  {adaptive[i]['gflops']:>14.1f}  {after:>12}"
        lines.append(line)
    lines += [
        "",
        f"base HRNet without exits: {report['base_gflops']:.1f} GFLOPs, "
        f"{report['base_params'] / 1e6:.3f}M params",
        "GFLOPs = multiply-accumulates / 2^30 of convs (the paper's accounting).",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- demo
def add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="the default model's anytime profile (FLOPs per exit and one timed forward)",
        description="Prints the default ADP-C model's cumulative FLOPs per exit and runs it "
        "once on a frame in PyTorch, reporting per-exit latency and masked fractions.",
    )
    p.add_argument("--size", default="256x512", help="frame HEIGHTxWIDTH (default 256x512)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    import time

    import torch

    from model_zoo.adpc import check_input_size
    from model_zoo.flops import flops_report
    from model_zoo.registry import create_model

    height, width = parse_size(args.size)
    check_input_size(height, width)
    if args.threads:
        torch.set_num_threads(args.threads)
    print("ADP-C anytime segmentation, default model w18_small_v2\n")
    model = create_model(DEFAULT_MODEL).eval()
    print(format_flops(flops_report(model.config, 1024, 2048, [0.193, 0.384, 0.63])))
    print("(ADP-C column: the paper's W48 average masked fractions, for illustration)\n")
    frame = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model(frame)  # warm-up
        state, stamps = frame, []
        start = time.perf_counter()
        for k in range(1, 5):
            state, _ = model.run_stage(k, state)
            stamps.append((time.perf_counter() - start) * 1e3)
    print(f"eager PyTorch at {height}x{width}, {torch.get_num_threads()} threads, dense stages:")
    for k, ms in enumerate(stamps, start=1):
        print(f"  exit {k}: {ms:7.1f} ms cumulative")
    print("\nNo trained weights ship yet (randomly initialised model): the real demo on the "
          "shipped model and sample frames comes with the training and runtime issues.")
    return 0


# ---------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adpc",
        description="Anytime semantic segmentation with confidence adaptivity (ADP-C).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    add_demo(sub)
    add_flops(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, PermissionError) as exc:
        if os.environ.get("ADPC_DEBUG"):
            raise
        print(f"adpc {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"adpc {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
