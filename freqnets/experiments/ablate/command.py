"""The ``freqnets ablate`` and ``freqnets models`` subcommands (argument parsing and printing)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _floats(text: str) -> list[float]:
    try:
        return [float(part) for part in _list(text)]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from error


def add_ablate_command(commands) -> argparse.ArgumentParser:
    """Add ``ablate`` to the ``freqnets`` subcommands."""
    parser = commands.add_parser(
        "ablate",
        help="the main job: train one network in every domain and compress rate, with baselines (resumable)",
        description="Train and compare a network converted to each domain at each compress rate. With no "
        "arguments: the quick preset on the bundled data (a few minutes on 2 CPU cores). Re-running the same "
        "command resumes; under torchrun it trains with DDP. See docs/ablation.md.",
    )
    parser.add_argument("--preset", default="quick", help="quick (default), cifar10 or tiny")
    parser.add_argument("--config", type=Path, help="TOML or YAML file of settings (applied over the preset)")
    parser.add_argument("--data", help="'cifar10', a zip or folder of JPEGs with train/ and test/, or an ImageFolder")
    parser.add_argument("--models", type=_list, help="comma-separated: cifar_resnet, small_cnn or timm names")
    parser.add_argument("--inputs", type=_list, help="comma-separated: rgb, dct")
    parser.add_argument("--domains", type=_list, help="comma-separated convert_model domains")
    parser.add_argument("--rates", type=_floats, help="comma-separated compress rates in [0, 1)")
    parser.add_argument("--baselines", type=_list, help="comma-separated: conv, bf16, dynamic ('' for none)")
    parser.add_argument("--energies", type=_floats, help="energies kept by the dynamic baseline")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--train-per-class", type=int, help="first N training images per class (0: all)")
    parser.add_argument("--test-per-class", type=int, help="first N test images per class (0: all)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--device", help="auto, cpu or cuda")
    parser.add_argument("--threads", type=int, help="torch CPU threads (0: torch's choice)")
    parser.add_argument("--out", help="output folder (results, checkpoints, plots)")
    parser.add_argument("--shard", help="i/n: run only shard i of n of the grid (round robin); merge with --merge")
    parser.add_argument("--merge", nargs="+", type=Path, metavar="DIR", help="merge shard output folders into --out")
    parser.add_argument("--report", action="store_true", help="only tabulate every finished run in --out (no training)")
    parser.add_argument(
        "--retime", type=int, default=0, metavar="N",
        help="with --report: time N training steps of every trained network side by side, interleaved",
    )  # fmt: skip
    parser.add_argument("--no-plots", action="store_true", help="skip the plots")
    parser.set_defaults(handler=run_ablate_command)
    return parser


_OVERRIDES = ("data", "models", "inputs", "domains", "rates", "baselines", "energies", "epochs", "batch_size", "lr",
              "train_per_class", "test_per_class", "seed", "device", "threads", "out")  # fmt: skip


def run_ablate_command(args: argparse.Namespace) -> int:
    from . import build_config, merge, preflight, report_folder, run_ablation

    if args.report:
        if not args.out:
            raise ValueError("--report needs --out, the output folder to tabulate")
        result = report_folder(Path(args.out), plots=not args.no_plots, retime_rounds=args.retime)
    elif args.merge:
        if not args.out:
            raise ValueError("--merge needs --out, the folder to write the merged results into")
        result = merge(args.merge, Path(args.out), plots=not args.no_plots)
    else:
        overrides = {key: getattr(args, key) for key in _OVERRIDES}
        config = build_config(args.preset, args.config, overrides)
        preflight(config)  # every user error is reported before the first line of output
        print(f"freqnets ablate: preset {args.preset!r}, output {config.out}", file=sys.stderr)
        try:
            result = run_ablation(config, shard=args.shard, plots=not args.no_plots)
        except KeyboardInterrupt:
            print("\nfreqnets ablate: interrupted; run the same command again to resume", file=sys.stderr)
            return 130
    if not result.get("is_main", True):
        return 0  # the other processes of a torchrun job: rank 0 reports
    if not result["rows"]:
        print("freqnets ablate: no finished runs yet")
        return 0
    print(result["table"])
    state = "complete" if result["complete"] else "partial (other shards or runs still to come)"
    if result.get("read_only"):
        print(f"\n{len(result['rows'])} runs, {state}; {result['out']} is read-only: its results files are unchanged")
    else:
        print(f"\n{len(result['rows'])} runs, {state}; results in {result['out']}/results.csv, results.json and plots")
    return 0


def add_models_command(commands) -> argparse.ArgumentParser:
    """Add ``models`` to the ``freqnets`` subcommands."""
    parser = commands.add_parser("models", help="list freqnets' timm models: input shapes, parameters, multiply-adds")
    parser.add_argument("--filter", default="", help="only names containing this text")
    parser.set_defaults(handler=run_models_command)
    return parser


def run_models_command(args: argparse.Namespace) -> int:
    from .catalog import catalog_table

    print(catalog_table(args.filter))
    return 0
