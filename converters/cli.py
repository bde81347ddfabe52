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
from pathlib import Path

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


def parse_threshold(text: str, flag: str = "--threshold") -> float | None:
    """'off' -> None (CA off), else a confidence threshold in [0, 1]."""
    if text == "off":
        return None
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{flag} {text!r}: a number or 'off'") from None
    if not 0.0 <= value <= 1.0:
        raise UsageError(f"{flag} {text!r} must lie in [0, 1] (or be 'off')")
    return value


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
        help="the shipped model on the shipped sample frames, exit by exit",
        description="Converts the shipped ADP-C model (or --checkpoint) once to an ExecuTorch "
        "bundle at the frames' size (cached), runs it through the anytime runtime on sample "
        "frames and reports, per exit, cumulative latency, masked fraction, GFLOPs and mIoU; "
        "writes a panel of every exit's overlay and mask and an overlay video. --eager runs "
        "the PyTorch model instead.",
    )
    p.add_argument("--checkpoint", help="an adpc train checkpoint (default: the shipped model)")
    p.add_argument("--frames", default=None,
                   help="folder of frame_*.png (+ label_*.png); default: the shipped drive")
    p.add_argument("--threshold", default=None,
                   help="CA threshold, or 'off' (default: the model's calibrated one)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads")
    p.add_argument("--out", default="runs/demo",
                   help="folder for exits.png, overlay.gif and demo.json")
    p.add_argument("--eager", action="store_true",
                   help="run the PyTorch model, not a converted bundle")
    p.add_argument("--bundle", default=None,
                   help="run this bundle folder instead of the cached conversion")
    p.add_argument("--precision", default=None, choices=["fp32", "int8"],
                   help="bundle precision (int8: the shipped QAT twin); default: the fastest "
                   "path that builds here (int8 sparse when the native kernel compiles), or "
                   "the --bundle's own")
    p.add_argument("--dense", action="store_true",
                   help="convert the dense-masked graphs, not the sparse kernel's")
    p.add_argument("--deadline-ms", type=float, default=None, help="per-frame deadline")
    p.add_argument("--cache", default=None,
                   help="folder for converted bundles (default $ADPC_CACHE or ~/.cache/adpc)")
    p.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    import torch

    from converters.demo import SAMPLES, demo, format_demo, load_frames
    from model_zoo.adpc import check_input_size
    from model_zoo.registry import create_model, load_trained

    if args.threads is not None and args.threads < 1:
        raise UsageError("--threads must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    threshold = parse_threshold(args.threshold) if args.threshold is not None else "config"
    frames = load_frames(Path(args.frames) if args.frames else SAMPLES)
    height, width = frames[0][1].shape[:2]
    check_input_size(height, width)
    if not args.eager and args.bundle is None:
        from edge.backends.executorch import runtime_available

        if not runtime_available():
            print("ExecuTorch is not installed: running the PyTorch model instead "
                  "(pip install 'adpc[executorch]' for the converted bundle)", file=sys.stderr)
            args.eager = True
    if args.eager:
        model = load_trained(args.checkpoint) if args.checkpoint else create_model(
            DEFAULT_MODEL, pretrained=True
        )
        report = demo(model, frames, model.config.threshold if threshold == "config"
                      else threshold, Path(args.out))
        print(format_demo(report))
        print(f"\nwrote {args.out}/exits.png (every exit's overlay and mask) and "
              f"{args.out}/demo.json")
        return 0
    from converters.demo import cached_bundle, demo_bundle, fastest_path
    from edge.backends import open_backend
    from edge.bundle import read_bundle

    folder, precision = args.bundle, args.precision
    if folder is None:
        say = _progress_printer(False)
        sparse, why = not args.dense, "as asked"
        if precision is None:
            precision, fast, why = fastest_path()
            sparse = sparse and fast
        print(f"path: {why}", flush=True)
        folder, built = cached_bundle(args.checkpoint, precision, height, width,
                                      cache=args.cache, progress=say, sparse=sparse)
        print(f"{'converted' if built else 'using the cached'} bundle {folder}", flush=True)
    elif precision is None:
        owned = [f.precision for f in read_bundle(folder).files_for("executorch")]
        precision = owned[0] if owned else "fp32"
    with open_backend("executorch", folder, precision, threads=args.threads) as backend:
        report = demo_bundle(backend, frames, "manifest" if threshold == "config"
                             else threshold, Path(args.out), args.deadline_ms)
    print(format_demo(report))
    print(f"\nwrote {args.out}/exits.png (every exit's overlay and mask), {report['video']} "
          f"(latest exit per frame) and {args.out}/demo.json")
    return 0


# --------------------------------------------------------------------------------- train
def add_train(sub: argparse._SubParsersAction) -> None:
    from model_zoo.train import TrainConfig

    d = TrainConfig()
    p = sub.add_parser(
        "train",
        help="train an ADP-C model (synthetic scenes or a local Cityscapes folder)",
        description="Per-exit cross-entropy on carried-over logits, SGD + poly schedule, CA "
        "active from the first step. Options come from --config YAML and/or flags (flags "
        "win). Multi-GPU / multi-node: launch with torchrun.",
    )
    p.add_argument("--config", help="YAML file with TrainConfig fields")
    p.add_argument("--model", choices=list_models())
    p.add_argument("--data", help="'synthetic' (default) or a Cityscapes root folder")
    p.add_argument("--steps", type=int, help=f"optimizer steps (default {d.steps})")
    p.add_argument("--batch-size", type=int, help=f"global batch (default {d.batch_size})")
    p.add_argument("--lr", type=float, help=f"initial learning rate (default {d.lr})")
    p.add_argument("--crop", help="training crop HEIGHTxWIDTH (default 256x512)")
    p.add_argument("--data-size", help="synthetic render size HEIGHTxWIDTH (default 256x512)")
    p.add_argument("--scale", help="random scale range LO,HI (default 0.5,2.0)")
    p.add_argument("--threshold", type=float, help="CA threshold while training (0.998)")
    p.add_argument("--no-ca", action="store_true", help="train the EE+RH model (CA off)")
    p.add_argument("--pretrained", help="local checkpoint to start from (HRNet or ADP-C)")
    p.add_argument("--seed", type=int)
    p.add_argument("--workers", type=int, help="DataLoader worker processes (default 1)")
    p.add_argument("--threads", type=int, help="torch CPU threads per process")
    p.add_argument("--checkpoint-every", type=int)
    p.add_argument("--log-every", type=int)
    p.add_argument("--out", help="run folder for last.pt and log.jsonl (default runs/train)")
    p.add_argument("--resume", help="continue exactly from a last.pt written by adpc train")
    p.add_argument("--stop-at", type=int, help="leave after this step with a checkpoint "
                   "(the schedule still spans --steps; --resume continues)")
    p.add_argument("--qat", action="store_true",
                   help="int8 quantization-aware fine-tuning of --pretrained (default: the "
                   "shipped model); writes qat.pt for `adpc eval` and `adpc convert`")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_train)


def train_config_from_args(args: argparse.Namespace):
    import yaml

    from model_zoo.train import TrainConfig

    values: dict = {}
    if args.config:
        try:
            with open(args.config) as fh:
                values = yaml.safe_load(fh) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise UsageError(f"cannot read --config {args.config}: {exc}") from None
        if not isinstance(values, dict):
            raise UsageError(f"--config {args.config} must hold a mapping of options")
    flags = {
        "model": args.model, "data": args.data, "steps": args.steps,
        "batch_size": args.batch_size, "lr": args.lr, "threshold": args.threshold,
        "pretrained": args.pretrained, "seed": args.seed, "workers": args.workers,
        "threads": args.threads, "checkpoint_every": args.checkpoint_every,
        "log_every": args.log_every, "out": args.out,
    }
    values.update({k: v for k, v in flags.items() if v is not None})
    if args.crop:
        values["crop"] = parse_size(args.crop)
    if args.data_size:
        values["data_size"] = parse_size(args.data_size)
    if args.scale:
        try:
            lo, hi = (float(v) for v in args.scale.split(","))
        except ValueError:
            raise UsageError(f"--scale {args.scale!r} is not LO,HI e.g. 0.5,2.0") from None
        values["scale"] = (lo, hi)
    if args.no_ca:
        values["threshold"] = None
    if args.quiet:
        values["progress"] = False
    if args.qat:
        values["qat"] = True
    if values.get("qat") and not values.get("pretrained"):
        from model_zoo.registry import DEFAULT_WEIGHTS, WEIGHTS_DIR

        name = values.get("model", "w18_small_v2")
        if name not in DEFAULT_WEIGHTS:
            raise UsageError(f"--qat needs --pretrained for {name} (no shipped weights)")
        values["pretrained"] = str(WEIGHTS_DIR / DEFAULT_WEIGHTS[name])
    return TrainConfig.from_dict(values)


def run_train(args: argparse.Namespace) -> int:
    from model_zoo.train import images_per_second, train

    config = train_config_from_args(args)
    state = train(config, resume=args.resume, stop_at=args.stop_at)
    last = state.history[-1] if state.history else {}
    print(f"trained to step {state.step}: loss {last.get('loss')}, exit losses "
          f"{last.get('exit_loss')}, {images_per_second(state.history):.2f} img/s; "
          f"checkpoint {config.out}/last.pt")
    if config.qat and state.step == config.steps:
        print(f"QAT model (fake-quant, for eval and convert): {config.out}/qat.pt")
    return 0


# ---------------------------------------------------------------------------------- eval
def add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="per-exit mIoU, masked fractions, GFLOPs and the anytime plot",
        description="Evaluates the same weights with CA off (EE+RH) and at each threshold: "
        "per-exit mIoU (19 classes, 255 ignored), masked fraction per exit and cumulative "
        "GFLOPs with the measured fractions (paper accounting, averaged per image).",
    )
    p.add_argument("--checkpoint", required=True,
                   help="a checkpoint from adpc train (last.pt, or qat.pt: fake-quant int8)")
    p.add_argument("--data", default="synthetic", help="'synthetic' or a Cityscapes root")
    p.add_argument("--split", default="val")
    p.add_argument("--size", default="256x512", help="evaluation HEIGHTxWIDTH (synthetic)")
    p.add_argument("--images", type=int, default=100, help="number of images (default 100)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--thresholds", default=None,
                   help="comma list of CA thresholds (default: the model's)")
    p.add_argument("--out", default="runs/eval", help="folder for eval.json and anytime.png")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", action="store_true", help="print the JSON result")
    p.set_defaults(func=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    import torch

    from model_zoo.data.sources import build_source
    from model_zoo.data.transforms import eval_transform
    from model_zoo.evaluate import evaluate, format_report, plot_anytime, report, write_json
    from model_zoo.registry import load_any

    if args.threads:
        torch.set_num_threads(args.threads)
    size = parse_size(args.size)
    model = load_any(args.checkpoint)
    if args.thresholds:
        try:
            thresholds = [float(v) for v in args.thresholds.split(",") if v.strip()]
        except ValueError:
            raise UsageError(f"--thresholds {args.thresholds!r} is not a comma list") from None
    else:
        thresholds = [model.config.threshold] if model.config.threshold is not None else []
    source = build_source(args.data, args.split, size, length=args.images)
    n = min(args.images, len(source))

    def batches():
        for start in range(0, n, args.batch_size):
            stop = min(n, start + args.batch_size)
            pairs = [eval_transform(*source[i]) for i in range(start, stop)]
            yield torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])

    modes = [None, *thresholds]
    results = evaluate(model, batches(), modes, size, progress=not args.json)
    data = report(results, model, size, args.data, n)
    out = Path(args.out)
    write_json(data, out / "eval.json")
    plot_anytime(data, out / "anytime.png")
    print(json.dumps(data) if args.json else format_report(data))
    if not args.json:
        print(f"\nwrote {out / 'eval.json'} and {out / 'anytime.png'}")
    return 0


# ---------------------------------------------------------------------------------- pack
def add_pack(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pack",
        help="package a training run as a small checkpoint + JSON card",
        description="Keeps the weights and model config (with the calibrated threshold) of a "
        "training checkpoint and writes a card with the recipe, training summary and an "
        "evaluation report from adpc eval.",
    )
    p.add_argument("--checkpoint", required=True,
                   help="last.pt from adpc train, or qat.pt from adpc train --qat")
    p.add_argument("--threshold", required=True, help="calibrated CA threshold, or 'off'")
    p.add_argument("--eval", help="eval.json from adpc eval to include in the card")
    p.add_argument("--recipe", help="the command line that trained it")
    p.add_argument("--notes", default="")
    p.add_argument("--out", required=True, help="output .pt path (the card goes beside it)")
    p.set_defaults(func=run_pack)


def run_pack(args: argparse.Namespace) -> int:
    from model_zoo.package import package

    threshold = parse_threshold(args.threshold)
    evaluation = None
    if args.eval:
        try:
            evaluation = json.loads(Path(args.eval).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UsageError(f"cannot read --eval {args.eval}: {exc}") from None
    weights, card = package(Path(args.checkpoint), Path(args.out), threshold, evaluation,
                            args.recipe, args.notes)
    print(f"wrote {weights} ({weights.stat().st_size / 1e6:.1f} MB) and {card}")
    return 0


# ------------------------------------------------------------------------------- convert
def add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="convert a model's stages to ExecuTorch / TFLite / Core ML files in one bundle",
        description="Splits the model into its four stage graphs, converts them for each "
        "backend, writes a bundle folder (manifest.json + stage files, atomically) and checks "
        "every exit against PyTorch on synthetic frames. int8 comes from the QAT model when "
        "one exists (qat.pt, or the shipped one), otherwise from post-training calibration. "
        "Core ML: fp16 (for --precision fp32) or int8 weights; its numeric parity needs macOS.",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", help="adpc train last.pt / packed model / qat.pt")
    src.add_argument("--pretrained", action="store_true",
                     help="the shipped model (the default when no --checkpoint is given)")
    p.add_argument("--backend", default="all",
                   help="executorch, tflite, coreml, torch (PyTorch on a host), a comma list, "
                   "or all (default: the three phone runtimes)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "int8"])
    p.add_argument("--sparse", action="store_true",
                   help="masked convs call the native block-sparse kernel (built on first "
                   "use), so skipped pixels cost no conv time: ExecuTorch fp32 and int8 "
                   "(adpc::masked_conv2d / adpc::qmasked_conv2d), torch fp32")
    p.add_argument("--size", default="256x512", help="input HEIGHTxWIDTH, multiples of 32")
    p.add_argument("--out", default="bundles/w18_small_v2", help="bundle folder to write")
    p.add_argument("--frames", type=int, default=4,
                   help="synthetic frames for the parity check (0: skip it)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run_convert)


def parse_backends(text: str) -> list[str]:
    from converters.convert import BACKENDS, PHONE_BACKENDS

    names = list(PHONE_BACKENDS) if text == "all" else [v.strip() for v in text.split(",")
                                                        if v.strip()]
    bad = [n for n in names if n not in BACKENDS]
    if bad or not names:
        raise UsageError(f"--backend {text!r}: choose from {', '.join(BACKENDS)} or all")
    return names


def _progress_printer(quiet: bool):
    import time

    start = time.perf_counter()

    def say(message: str) -> None:
        if not quiet:
            print(f"[{time.perf_counter() - start:6.1f}s] {message}", file=sys.stderr, flush=True)

    return say


def run_convert(args: argparse.Namespace) -> int:
    from converters.convert import convert_bundle
    from converters.verify import format_table, verify_bundle
    from model_zoo.adpc import check_input_size

    size = parse_size(args.size)
    check_input_size(*size)
    backends = parse_backends(args.backend)
    if args.frames < 0:
        raise UsageError("--frames must be >= 0")
    say = _progress_printer(args.json)
    result = convert_bundle(args.out, backends, args.precision, *size,
                            checkpoint=args.checkpoint, progress=say, sparse=args.sparse)
    summary: dict = {"bundle": str(result.bundle), "seconds": result.seconds,
                     "backends": {o.backend: {"precision": o.precision, "report": o.report,
                                              "notes": o.notes} for o in result.outputs}}
    parity = []
    if args.frames:
        say(f"parity check on {args.frames} synthetic frames")
        parity = verify_bundle(result.bundle, frames=args.frames,
                               references={"int8" if args.precision == "int8" else "fp32":
                                           result.stages.reference})
        summary["parity"] = [r.to_dict() for r in parity]
    if args.json:
        print(json.dumps(summary))
    else:
        for o in result.outputs:
            for r in o.report:
                if "delegated_fraction" in r:
                    print(f"{o.backend} {o.precision} stage {r['stage']}: {r['ops']} ops, "
                          f"{r['delegated_fraction']:.1%} delegated to XNNPACK")
            for note in o.notes:
                print(f"{o.backend}: {note}")
        if parity:
            print(format_table(parity))
        print(f"\nwrote {result.bundle} ({', '.join(f.path for f in result.manifest.files)})")
    return 1 if any(r.status == "fail" for r in parity) else 0


def add_verify(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "verify",
        help="check a bundle's files against PyTorch, exit by exit",
        description="Runs every backend in the bundle that can run here on synthetic frames "
        "and compares each exit (carry-over included) with the PyTorch model the bundle came "
        "from: max |logit diff|, argmax and mask agreement, mIoU. Targets: fp32 <= 1e-3 and "
        ">= 99.9%; int8 >= 98% against the int8 PyTorch model. Core ML needs macOS.",
    )
    p.add_argument("bundle", help="a bundle folder written by adpc convert")
    p.add_argument("--checkpoint", help="the source checkpoint (default: the manifest's)")
    p.add_argument("--backend", default="all",
                   help="backends to check (default: every backend in the bundle)")
    p.add_argument("--frames", type=int, default=4, help="synthetic frames (default 4)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run_verify)


def run_verify(args: argparse.Namespace) -> int:
    from converters.verify import format_table, verify_bundle

    if args.frames < 1:
        raise UsageError("--frames must be >= 1")
    backends = None if args.backend == "all" else parse_backends(args.backend)
    results = verify_bundle(args.bundle, checkpoint=args.checkpoint, frames=args.frames,
                            backends=backends, threads=args.threads)
    if not results:
        raise UsageError(f"bundle {args.bundle} holds no files for "
                         f"{', '.join(backends or ['any backend'])}")
    if args.json:
        print(json.dumps([r.to_dict() for r in results]))
    else:
        print(format_table(results))
    return 1 if any(r.status == "fail" for r in results) else 0


# --------------------------------------------------------------------------------- bench
def add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="latency and energy per exit of a bundle on this machine, CA vs dense in one run",
        description="Runs the bundle on frames (the shipped drive by default) with confidence "
        "adaptivity, with CA off, and run to completion (the dense baseline), interleaved, and "
        "prints per-stage and cumulative latency per exit (p50/p90/p99, cold), the dense/CA "
        "ratios, masked fractions, the cost model's prediction and energy (RAPL or battery "
        "when readable, else a power x time estimate; the report names the meter). "
        "--calibrate fits the runtime's cost model on this machine and stores it in the bundle.",
    )
    p.add_argument("bundle", help="a bundle folder written by adpc convert")
    p.add_argument("--backend", default="executorch", help="executorch (default), tflite or torch")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int8"])
    p.add_argument("--threads", type=int, default=None, help="runtime threads (default: all)")
    p.add_argument("--frames", default=None,
                   help="image folder (default: the shipped synthetic drive)")
    p.add_argument("--max-frames", type=int, default=4)
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per frame (median)")
    p.add_argument("--calibrate", action="store_true",
                   help="fit the cost model here and store it in the bundle's manifest")
    p.add_argument("--out", default=None, help="write the report as JSON to this file")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run_bench)


def run_bench(args: argparse.Namespace) -> int:
    from edge.atomic import write_text
    from edge.backends import open_backend
    from edge.bench import bench, calibrate, cost_table_key, format_report, store_cost_table
    from edge.power import find_meter
    from edge.preprocess import to_input
    from edge.sources import ImageFolderSource, SyntheticDriveSource

    if args.repeats < 1 or args.max_frames < 1:
        raise UsageError("--repeats and --max-frames must be >= 1")
    if args.threads is not None and args.threads < 1:
        raise UsageError("--threads must be >= 1")
    say = _progress_printer(args.json)
    backend = open_backend(args.backend, args.bundle, args.precision, threads=args.threads)
    source = ImageFolderSource(args.frames) if args.frames else SyntheticDriveSource()
    with source:
        frames = [to_input(f.image, backend.manifest.input)[0]
                  for _, f in zip(range(args.max_frames), source, strict=False)]
    if args.calibrate:
        with backend:
            model = calibrate(backend, frames, progress=say)
            key = cost_table_key(backend)
            table = model.to_table(backend=backend.name, threads=args.threads)
            store_cost_table(args.bundle, key, table)
        say(f"stored the cost table {key!r} in {args.bundle}/manifest.json")
        # reopened: the runner reads the new table from the manifest
        backend = open_backend(args.backend, args.bundle, args.precision, threads=args.threads)
    with backend, find_meter() as meter:
        report = bench(backend, frames, repeats=args.repeats, progress=say, meter=meter,
                       bundle=str(args.bundle))
    if args.calibrate:
        report.calibration = {"key": key, "table": table}
    data = report.to_dict()
    if args.out:
        write_text(args.out, json.dumps(data, indent=1))
    print(json.dumps(data) if args.json else format_report(report))
    return 0


# ----------------------------------------------------------------------------------- run
def add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="anytime segmentation of a camera, video or image folder under a budget",
        description="Drives a bundle's stages on each frame until the budget says stop (a "
        "stage the budget cannot afford is never started; the first exit always runs), draws "
        "the latest exit over the frame with a HUD and writes a video/GIF plus a JSON report.",
    )
    p.add_argument("bundle", nargs="?", default=None,
                   help="a bundle folder written by adpc convert (or --pretrained)")
    p.add_argument("--pretrained", action="store_true",
                   help="the shipped model, converted once at 256x512 for --backend and "
                   "--precision and cached like adpc demo's bundle")
    p.add_argument("--source", default="samples",
                   help="'samples' (the shipped drive), a camera index, a video file or a "
                   "folder of frames (default samples)")
    p.add_argument("--backend", default="executorch", help="executorch (default), tflite or torch")
    p.add_argument("--precision", default=None, choices=["fp32", "fp16", "int8"],
                   help="default: the bundle's own; with --pretrained the fastest path that "
                   "builds here (int8 sparse ExecuTorch when the native kernel compiles)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--deadline-ms", type=float, default=None, help="per-frame deadline")
    p.add_argument("--energy-mj", type=float, default=None, help="per-frame energy budget")
    p.add_argument("--battery", default=None,
                   help="battery allowance spread over the stream: e.g. '1%%' (per hour, needs "
                   "--battery-wh unless a battery reports it) or '50mWh' (per session)")
    p.add_argument("--battery-wh", type=float, default=None, help="battery capacity in Wh")
    p.add_argument("--fps", type=float, default=10.0, help="frame rate for --battery and video")
    p.add_argument("--threshold", default=None, help="CA threshold or 'off' (default: bundle's)")
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--loop", action="store_true",
                   help="repeat 'samples' or a folder of frames until --max-frames (soak runs)")
    p.add_argument("--adapt", action="store_true",
                   help="scale the cost model's predictions by the slowdown measured on recent "
                   "stages (a device slower than at calibration: throttling, a busy core)")
    p.add_argument("--out", default="runs/run", help="folder for overlay.mp4/.gif and run.json")
    p.add_argument("--video", default="overlay.gif", help="file name of the overlay video")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run_run)


def _budget(args: argparse.Namespace):
    from edge.budget import BatteryGovernor, Deadline, EnergyBudget, compose
    from edge.power import battery_capacity_wh

    battery = None
    if args.battery:
        wh = args.battery_wh or battery_capacity_wh()
        battery = BatteryGovernor.from_cli(args.battery, fps=args.fps, battery_wh=wh,
                                           frames=args.max_frames)
    budgets = [Deadline(args.deadline_ms) if args.deadline_ms is not None else None,
               EnergyBudget(args.energy_mj) if args.energy_mj is not None else None, battery]
    return compose(*budgets) if any(b is not None for b in budgets) else None


def run_run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from edge.atomic import write_text
    from edge.backends import open_backend
    from edge.bundle import read_bundle
    from edge.power import find_meter
    from edge.runtime import AnytimeRunner
    from edge.sources import open_source
    from edge.stream import run_stream
    from edge.viz import write_video

    if args.max_frames is not None and args.max_frames < 1:
        raise UsageError("--max-frames must be >= 1")
    if args.loop and args.max_frames is None:
        raise UsageError("--loop repeats the source forever: give --max-frames N too")
    if (args.bundle is None) == (not args.pretrained):
        raise UsageError("give a bundle folder or --pretrained (one of them)")
    budget = _budget(args)
    bundle = args.bundle
    if args.pretrained:
        from converters.demo import cached_bundle, fastest_path

        if args.precision == "fp16":
            raise UsageError("--pretrained converts fp32 or int8: drop --precision fp16")
        sparse = False
        if args.precision is None:
            args.precision, sparse, why = fastest_path(args.backend)
            print(f"path: {why}", file=sys.stderr, flush=True)
        bundle, _ = cached_bundle(None, args.precision, 256, 512, backend=args.backend,
                                  progress=_progress_printer(args.json), sparse=sparse)
    elif args.precision is None:
        owned = [f.precision for f in read_bundle(bundle).files_for(args.backend)]
        args.precision = owned[0] if owned else "fp32"
    backend = open_backend(args.backend, bundle, args.precision, threads=args.threads)
    threshold = ("manifest" if args.threshold is None
                 else parse_threshold(args.threshold, "--threshold"))
    out = Path(args.out)
    with backend, find_meter() as meter, open_source(args.source, loop=args.loop) as source:
        runner = AnytimeRunner(backend, threshold, meter=meter, adapt=args.adapt)
        if budget is not None and runner.cost_model.source.startswith("flops"):
            print(f"note: the cost model is not calibrated for this device ("
                  f"{runner.cost_model.source}), so budgets stop early: run `adpc bench "
                  f"{bundle} --backend {args.backend} --precision {args.precision} "
                  f"--calibrate` once", file=sys.stderr)

        def show(record) -> None:
            if not args.json:
                ms = record.exit_ms[-1] if record.exit_ms else 0.0
                print(f"frame {record.index:4d}: exit {record.exit}, {ms:7.1f} ms, "
                      f"{record.energy_mj:6.1f} mJ {record.stop_reason}", flush=True)

        report, frames = run_stream(runner, source, budget, args.max_frames, args.deadline_ms,
                                    show)
        video = write_video(frames, out / args.video, fps=args.fps)
        data = {**report.to_dict(), "energy_source": meter.source,
                "cost_model": runner.cost_model.source}
    write_text(out / "run.json", json.dumps(data, indent=1))
    if args.json:
        print(json.dumps(data))
    else:
        print(json.dumps(data["summary"]))
        print(f"wrote {video} and {out / 'run.json'} (energy: {meter.source})")
    return 0


# ---------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adpc",
        description="Anytime semantic segmentation with confidence adaptivity (ADP-C).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    add_bench(sub)
    add_convert(sub)
    add_demo(sub)
    add_eval(sub)
    add_flops(sub)
    add_pack(sub)
    add_run(sub)
    add_train(sub)
    add_verify(sub)
    return parser


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors that are the user's to fix: one line, exit 2, no traceback."""
    from converters.export import ExportError
    from edge.backends import BackendUnavailable
    from edge.kernels.build import KernelUnavailable
    from edge.sources import SourceError

    return (ValueError, FileNotFoundError, PermissionError, ImportError, BackendUnavailable,
            SourceError, ExportError, KernelUnavailable)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except user_errors() as exc:
        if os.environ.get("ADPC_DEBUG"):
            raise
        print(f"adpc {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"adpc {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
