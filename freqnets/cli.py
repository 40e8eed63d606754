"""The ``freqnets`` command line.

freqnets ablate    the main job: every domain x compress rate, trained and compared (docs/ablation.md)
freqnets models    the registered timm models with input shapes, parameters and multiply-adds
freqnets demo      the transform layer on real images (compress, report the quality)
freqnets bench     conv | accuracy | loader | kernels: implementations side by side
freqnets robustness  perturbation channels vs adversarial examples (docs/robustness.md)

``freqnets --help`` and ``freqnets COMMAND --help`` list the options. A user error is one
``freqnets: error: ...`` line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one ``freqnets: error: ...`` line (exit status 2), as every
    other user error of the command line."""

    def error(self, message: str):
        self.exit(2, f"freqnets: error: {message} (see {self.prog} --help)\n")


def _int_in(low: int, high: int):
    """An argparse type: an int in ``[low, high]``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be in [{low}, {high}], got {text}")
        return value

    return parse


def _real_in(low: float, high: float, low_open: bool = False):
    """An argparse type: a finite float in ``[low, high]`` (``(low, high]`` with ``low_open``)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (math.isfinite(value) and (low < value if low_open else low <= value) and value <= high):
            raise argparse.ArgumentTypeError(f"must be a finite number in {'(' if low_open else '['}{low:g}, {high:g}]")
        return value

    return parse


def _check_data(path: Path | None) -> None:
    """Refuse a data path that is missing or neither a folder nor a file (``/dev/zero``), before any work."""
    if path is None:
        return
    if not path.exists():
        raise FileNotFoundError(f"no such data: {path}")
    if not (path.is_dir() or path.is_file()):
        raise ValueError(f"data {path} is neither a folder nor a zip archive")


def _workers(text: str) -> list[int]:
    """An argparse type: comma-separated DataLoader worker counts in [0, 256]."""
    parse = _int_in(0, 256)
    counts = [parse(part.strip()) for part in text.split(",") if part.strip()]
    if not counts:
        raise argparse.ArgumentTypeError(f"expected comma-separated worker counts, got {text!r}")
    return counts


def _check_out(folder: Path | None) -> None:
    """Refuse an output folder that cannot be written, before any work (``ValueError``)."""
    if folder is not None:
        from .experiments.storage import check_writable_folder

        check_writable_folder(folder)


_COUNT = _int_in(1, 10**9)
_THREADS = _int_in(0, 4096)


def _rates(text: str) -> list[float]:
    from ._checks import check_rate

    try:
        return [check_rate(float(part), "rate") for part in text.split(",") if part.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def _domains(text: str) -> list[str]:
    from .layers import domains_with_layers

    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in domains_with_layers()]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"domains must be among {', '.join(domains_with_layers())}, got {text!r}")
    return names


def _demo(args: argparse.Namespace) -> int:
    from .experiments.data import load_images
    from .experiments.transforms_demo import run_demo

    _check_data(args.data)
    _check_out(args.out)
    print(
        "freqnets demo: a demonstration of the transform layer (FFT, DCT, SVD, Winograd) on real images.\n"
        "The main job is the cross-domain ablation, `freqnets ablate` (what `./dev.sh run` runs).\n"
    )
    images = load_images(args.data, split=args.split, limit=args.limit)
    print(f"{len(images)} images from {args.data}\n")
    print(run_demo(images, args.rates, args.out))
    if args.out is not None:
        print(f"\nwrote {args.out / 'transforms.json'} and {args.out / 'transforms.md'}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    import torch

    if args.what in ("accuracy", "loader"):
        _check_data(args.data)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.what == "accuracy":
        from .experiments import domain_accuracy

        description = (
            f"freqnets bench accuracy: small CNN, {args.train_per_class}/{args.test_per_class} train/test images "
            f"per class from {args.data}, {args.epochs} epochs, then {args.finetune_epochs} fine-tune epoch(s)"
        )
        print(description + "\n")
        result = domain_accuracy.run(
            args.data, args.train_per_class, args.test_per_class, args.epochs, args.finetune_epochs,
            args.domains, args.rates,
        )  # fmt: skip
        print(domain_accuracy.report(*result, description))
        return 0
    if args.what == "loader":
        return _bench_loader(args)
    if args.what == "kernels":
        return _bench_kernels(args)
    from .experiments import bench_conv

    if args.precision:
        print(f"freqnets bench conv --precision: the band-limited product in reduced precision on {args.device}\n")
        print(bench_conv.precision_rows(args.rates[-1], args.device, args.min_run_time, args.quick))
        return 0
    print(f"freqnets bench conv: forward+backward of transform-domain vs framework convolutions on {args.device}\n")
    results = bench_conv.run(args.rates, args.device, args.min_run_time, args.quick, domains=args.domains)
    print(bench_conv.report(results, args.device))
    return 0


def _bench_loader(args: argparse.Namespace) -> int:
    from .experiments import bench_loader

    if args.reads:
        return _bench_reads(args)
    workers = args.workers
    print(f"freqnets bench loader: JPEG bytes -> model tensors, read_dct + DCTCollate vs Pillow, workers {workers}\n")
    sources = bench_loader.default_sources(args.data, args.images)
    rows, notes = bench_loader.run(sources, workers, args.batch_size, step=not args.quick)
    print(bench_loader.report(rows, notes))
    return 0


def _bench_reads(args: argparse.Namespace) -> int:
    """Per-file reads: ``read_dct`` against Pillow (and Pillow-SIMD, jpeg2dct) on the CIFAR-10 files of ``--data``
    and the ImageNet sample where present (:mod:`freqnets.experiments.bench_reads`)."""
    from .experiments import bench_loader, bench_reads

    if args.simd is not None:
        bench_reads.check_simd(args.simd)
    repeats, python_files = (2, 1) if args.quick else (5, 3)
    print(f"freqnets bench loader --reads: per-file reads, read_dct vs Pillow's decode, {args.images} files at most\n")
    sets = [("CIFAR-10 (" + args.data.name + ")", args.data)]
    imagenet = bench_loader.SHARED / "imagenet-sample" / "images.zip"
    if imagenet.exists():
        sets.append(("ImageNet sample (whole files)", imagenet))
    reports = []
    for name, path in sets:
        files = bench_loader.load_payloads(path, args.images)
        reports.append(bench_reads.measure(name, files, repeats, python_files, args.simd))
    print(bench_reads.report(reports))
    return 0


def _bench_kernels(args: argparse.Namespace) -> int:
    """CuPy kernel vs torch path vs cuDNN (:mod:`freqnets.experiments.bench_kernels`)."""
    from .experiments import bench_kernels

    argv = ["--rates", ",".join(str(r) for r in args.rates), "--threads", str(args.threads)]
    argv += ["--quick"] if args.quick else []
    return bench_kernels.main(argv)


# Integer options of `freqnets robustness` that override the StudyConfig field of the same name.
_ROBUSTNESS_INT_OPTIONS = (
    ("train-per-class", "training images per class"), ("test-per-class", "test images per class"),
    ("epochs", "training epochs"), ("attack-images", "images attacked"),
    ("pgd-steps", "PGD steps"), ("cw-steps", "C&W steps per binary-search step"),
    ("adaptive-steps", "adaptive PGD steps"), ("eot-draws", "EOT draws per adaptive step"),
    ("vote-draws", "majority-vote draws of random channels"),
    ("blackbox-images", "images for black-box attacks"),
    ("finetune-epochs", "fine-tune epochs of band-limited models"),
    ("instability-images", "images for M1/M2"), ("seed", "random seed"),
)  # fmt: skip


def _robustness(args: argparse.Namespace) -> int:
    import torch

    from .experiments.data import labelled_files
    from .experiments.robustness.study import QUICK, STAGES, Study, StudyConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = dict(QUICK) if args.quick else {}
    overrides |= {
        flag.replace("-", "_"): getattr(args, flag.replace("-", "_"))
        for flag, _ in _ROBUSTNESS_INT_OPTIONS
        if getattr(args, flag.replace("-", "_")) is not None
    }
    if args.epsilon is not None:
        overrides["epsilon"] = args.epsilon / 255
    if args.channels:
        overrides["channels"] = [c.strip() for c in args.channels.split(",") if c.strip()]
    if args.stages:
        overrides["stages"] = [s.strip() for s in args.stages.split(",") if s.strip()]
    config = StudyConfig(data=args.data, out=args.out, checkpoint=args.checkpoint, **overrides)
    _check_data(args.checkpoint)
    for split in ("train", "test"):  # the data's files are listed (not read) before any work
        labelled_files(args.data, split, getattr(config, f"{split}_per_class"))
    _check_out(args.out)
    stages = ", ".join(s for s in STAGES if s in config.stages and s not in ("model", "attacks"))
    print(f"freqnets robustness: channels {', '.join(config.channels)}; stages model, attacks, {stages}; "
          f"output {args.out}\n")  # fmt: skip
    redo = tuple(s.strip() for s in args.redo.split(",") if s.strip()) if args.redo else ()
    study = Study(config, progress=not args.quiet, redo=redo)
    study.run()
    print((args.out / "report.md").read_text())
    print(f"wrote results.json, report.md, CSV tables and plots to {args.out}")
    return 0


def _add_robustness_parser(commands) -> None:
    from .experiments.data import DEFAULT_DATA

    robust = commands.add_parser(
        "robustness", help="perturbation channels vs adversarial examples, adaptive attacks, band-limited models"
    )
    robust.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="CIFAR-10 JPEG zip or folder (train/, test/)")  # fmt: skip
    robust.add_argument("--out", type=Path, default=Path("runs/robustness"), help="output folder (resumes from it)")
    robust.add_argument("--checkpoint", type=Path, default=None, help="model state dict written by this command")
    robust.add_argument("--channels", default=None, help="comma-separated channels (default: all seven)")
    robust.add_argument("--stages", default=None, help="comma-separated stages after model and attacks")
    robust.add_argument("--epsilon", type=_real_in(0, 255, low_open=True), default=None,
                        help="L-inf radius in 1/255 units (default 8)")  # fmt: skip
    robust.add_argument("--redo", default=None, help="comma-separated finished stages to run again on resume")
    for name, text in _ROBUSTNESS_INT_OPTIONS:
        bounds = _int_in(0, 2**63 - 1) if name == "seed" else _int_in(0 if name == "finetune-epochs" else 1, 10**6)
        robust.add_argument(f"--{name}", type=bounds, default=None, help=text)
    robust.add_argument("--threads", type=_THREADS, default=0, help="torch threads (default: torch's choice)")
    robust.add_argument("--quiet", action="store_true", help="no progress bars")
    robust.add_argument("--quick", action="store_true", help="a smaller preset (fewer images, steps and strengths)")
    robust.set_defaults(handler=_robustness)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .experiments.data import DEFAULT_DATA

    parser = _Parser(prog="freqnets", description="Convolutional networks in transform domains.")
    parser.add_argument("--version", action="version", version=f"freqnets {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    from .experiments.ablate.command import add_ablate_command, add_models_command

    add_ablate_command(commands)
    add_models_command(commands)
    demo = commands.add_parser("demo", help="compress real images in every domain and report the quality")
    demo.add_argument(
        "--data", type=Path, default=DEFAULT_DATA,
        help="zip or folder of images (default: bundled CIFAR-10 subset)",
    )  # fmt: skip
    demo.add_argument("--split", default="test", help="top-level folder to read ('' for all)")
    demo.add_argument("--limit", type=_COUNT, default=500, help="most images to use")
    demo.add_argument(
        "--rates", type=_rates, default=[0.0, 0.25, 0.5, 0.75, 0.9], help="comma-separated compress rates"
    )
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder")
    demo.set_defaults(handler=_demo)
    bench = commands.add_parser("bench", help="benchmarks that compare implementations side by side")
    bench.add_argument(
        "what",
        choices=["conv", "accuracy", "loader", "kernels"],
        help="conv: layers vs nn.Conv1d/2d; accuracy: converted small CNN; loader: JPEG->DCT vs Pillow loading; "
        "kernels: CuPy product, band-limited layer and ResNet-18 step vs torch path vs cuDNN (batch 32)",
    )
    bench.add_argument("--domains", type=_domains, default=["fft"], help="comma-separated domains (default fft)")
    bench.add_argument("--data", type=Path, default=DEFAULT_DATA, help="accuracy: CIFAR-10 JPEG zip or folder")
    bench.add_argument("--train-per-class", type=_COUNT, default=200, help="accuracy: training images per class")
    bench.add_argument("--test-per-class", type=_COUNT, default=50, help="accuracy: test images per class")
    bench.add_argument("--epochs", type=_int_in(1, 100_000), default=10, help="accuracy: baseline training epochs")
    bench.add_argument("--finetune-epochs", type=_int_in(0, 100_000), default=1,
                       help="accuracy: fine-tune epochs per conversion")  # fmt: skip
    bench.add_argument("--rates", type=_rates, default=[0.0, 0.25, 0.5, 0.75], help="comma-separated compress rates")
    bench.add_argument("--device", default="cpu")
    bench.add_argument("--threads", type=_THREADS, default=0, help="torch threads (default: torch's choice)")
    bench.add_argument("--min-run-time", type=_real_in(0, 3600, low_open=True), default=1.0,
                       help="seconds of timing per measurement")  # fmt: skip
    bench.add_argument("--quick", action="store_true", help="first layer shape only (loader: no training step)")
    bench.add_argument(
        "--precision",
        action="store_true",
        help="conv: the band-limited product in float32 vs bfloat16 vs float16 (time and error, last --rates value)",
    )
    bench.add_argument("--images", type=_COUNT, default=2000, help="loader: most files per data set")
    bench.add_argument("--batch-size", type=_COUNT, default=128, help="loader: batch size (ImageNet: at most 32)")
    bench.add_argument("--workers", type=_workers, default=[0, 2],
                       help="loader: comma-separated DataLoader worker counts")  # fmt: skip
    bench.add_argument(
        "--reads",
        action="store_true",
        help="loader: per-file reads instead (read_dct vs Pillow's decode and jpeg2dct's loads)",
    )
    bench.add_argument(
        "--simd",
        type=Path,
        default=None,
        help="loader --reads: a folder holding Pillow-SIMD (pip install --target DIR pillow-simd)",
    )
    bench.set_defaults(handler=_bench)
    _add_robustness_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "split", None) == "":
        args.split = None
    from .experiments.storage import FolderLocked

    try:
        return args.handler(args)
    except (ValueError, OSError, FolderLocked) as error:  # bad values, paths, data, a busy or full folder
        print(f"freqnets: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
