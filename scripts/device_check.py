"""The prepared GPU device check of issue 13: one command on the GPU machine, one JSON and one markdown summary.

On the GPU machine, from the repository root, with the data pack carried (docs/device.md):

    PYTHONPATH=. python scripts/device_check.py OUT                 # part "check", about 7 minutes
    PYTHONPATH=. python scripts/device_check.py OUT --part table    # Table 2.1, resumable, <= 7.5 minutes a call

Part ``check`` writes ``OUT/device_check.json`` and ``OUT/device_check.md`` (plus pytest's junit files):

* ``tests_kernels``: ``pytest tests/kernels`` (CuPy kernels vs the torch path, forward and backward, every dtype;
  not the g++ emulation of the kernel source, the CPU's stand-in that CI runs); failures print their
  tracebacks at once (``tests/live_failures.py``), so a part killed at its budget still says why;
* ``tests_layers``: ``pytest tests/layers tests/models -k cuda`` (the device-parametrised tests, CUDA cases);
* ``bench_product``, ``bench_layer``, ``bench_step``: :mod:`freqnets.experiments.bench_kernels` (product, one layer,
  ResNet-18 training step at 224 px and the CIFAR variant; backends torch and cupy, rates 0 / 0.5 / 0.75,
  against timm's resnet18 on cuDNN; fp32, bf16 autocast, bf16 + channels_last; CUDA-event medians and peak
  ``torch.cuda.max_memory_allocated``, ratios in one run), and the training steps captured in a CUDA graph
  (``+graph`` rows, fp32 and bf16 + channels_last, rates 0 and 0.5);
* ``profile_layer``: :mod:`freqnets.experiments.layer_profile` (one layer's host issue time against its GPU time
  and kernels per call: launch-bound or not);
* ``dct_step``: JPEG bytes -> ``read_dct`` -> ``DCTCollate`` -> ``dct_resnet18_cifar`` training step on the GPU,
  and its logits on the GPU against the CPU;
* the issue's targets (met / not met) from the measured ratios.

Part ``table`` trains ``bl_resnet18_cifar`` on all of CIFAR-10 at the given rates and the ``nn.Conv2d``
network (:mod:`freqnets.experiments.cifar_gpu`), checkpointing every epoch into ``--state`` (a git-ignored
folder that stays on the warm machine between calls) and resuming from it; it writes ``OUT/table.json``
and ``OUT/table.md``.

Each part runs in its own ``try`` with its own time budget, and the summaries are rewritten after every
part, so a failure or a kill loses at most the part in progress. ``--dry-run`` runs the same code on the
CPU at tiny sizes (seconds); tests/experiments/test_device_check.py runs it in the default test suite.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import time
import traceback
import xml.etree.ElementTree as ElementTree
from dataclasses import asdict, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from freqnets.experiments import bench_kernels, cifar_gpu, layer_profile  # noqa: E402

PACK = ROOT / "device_data" / "cifar10_jpeg.npz"

#: Seconds per part of the GPU check, in the order they run; each part gets at most what is left of CHECK_TOTAL.
CHECK_BUDGETS = {"tests_kernels": 140, "tests_layers": 75, "bench_product": 25, "bench_layer": 45,
                 "bench_step": 170, "profile_layer": 20, "dct_step": 25}  # fmt: skip
#: Seconds for the whole check: a part gets at most what is left of it (the command's limit is 10 minutes).
CHECK_TOTAL = 465
#: The same for the CPU dry run.
DRY_RUN_BUDGETS = {name: 60 for name in CHECK_BUDGETS}

#: pytest arguments per test part (GPU run).
PYTEST_TARGETS = {
    # The g++ emulation of the kernel source is the CPU's stand-in for a GPU (CI runs it); here the kernels run.
    "tests_kernels": ["tests/kernels", "--ignore=tests/kernels/test_host_kernels.py"],
    "tests_layers": ["tests/layers", "tests/models", "-k", "cuda"],
}
#: The dry run collects the GPU tests (they skip on the CPU): the subprocess, junit and summary path runs.
DRY_RUN_PYTEST_TARGETS = {
    "tests_kernels": ["tests/kernels/test_gpu.py"],
    "tests_layers": ["tests/layers/test_convert.py", "-k", "cuda"],
}


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return None


def _command_output(args: list[str]) -> str | None:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=20, check=True).stdout.strip() or None
    except Exception:
        return None


def environment() -> dict:
    """What the numbers were measured on: GPU, driver, torch / CUDA / cuDNN / CuPy versions, flags, date."""
    from freqnets import kernels

    env = {
        "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "timm": _version("timm"),
        "cupy": _version("cupy-cuda13x") or _version("cupy-cuda12x") or _version("cupy"),
        "numpy": np.__version__,
        "cupy_backend": kernels.unavailable_reason() or "available",
        "cuda_available": torch.cuda.is_available(),
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "git_commit": _command_output(["git", "-C", str(ROOT), "rev-parse", "HEAD"]),
        "cpu_count": os.cpu_count(),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env |= {
            "gpu": torch.cuda.get_device_name(0),
            "gpu_memory_gib": round(props.total_memory / 2**30, 1),
            "gpu_capability": f"{props.major}.{props.minor}",
            "gpu_multiprocessors": props.multi_processor_count,
            "driver": _command_output(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]),
        }
    return env


def run_pytest(name: str, args: list[str], out: Path, timeout: float) -> dict:
    """``pytest args`` in a subprocess: junit file ``out/pytest_<name>.xml``, full output ``out/pytest_<name>.log``;
    returns the counts, the failures and the output's tail.

    A run past ``timeout`` is killed (``timed_out``); its counts then come from the verbose output it printed.
    Each test gets at most 120 s (pytest-timeout), so one hanging test does not cost the others.
    """
    junit = out / f"pytest_{name}.xml"
    junit.unlink(missing_ok=True)
    command = [sys.executable, "-m", "pytest", *args, "-v", "-rfE", "-p", "no:cacheprovider",
               "-p", "tests.live_failures", "-o", "timeout=120", f"--junitxml={junit}"]  # fmt: skip
    env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    result = {"command": " ".join(["pytest", *args]), "timed_out": False}
    start = time.monotonic()
    try:
        proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        output, result["returncode"] = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as expired:
        output = expired.stdout.decode(errors="replace") if isinstance(expired.stdout, bytes) else expired.stdout
        result |= {"timed_out": True, "returncode": None}
        output = output or ""
    result["seconds"] = round(time.monotonic() - start, 1)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"pytest_{name}.log").write_text(output)
    result["output_tail"] = output[-4000:]
    summary = junit_summary(junit)
    if summary["counts"] is None:
        summary = verbose_summary(output)
    return result | summary


_VERBOSE_LINE = re.compile(r"^(\S+::\S+) (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b", re.MULTILINE)
#: The header tests.live_failures prints before a failure's traceback.
_LIVE_FAILURE = re.compile(r"^\[live\] (\S+::\S+) (?:setup|call|teardown) FAILED after", re.MULTILINE)


def _live_messages(output: str) -> dict[str, str]:
    """``{test: first "E ..." line of its traceback}`` from the lines ``tests.live_failures`` printed."""
    messages = {}
    for match in _LIVE_FAILURE.finditer(output):
        after = output[match.end() :].splitlines()
        errors = [line[1:].strip() for line in after[:200] if line.startswith("E ")]
        messages.setdefault(match.group(1), errors[0][:500] if errors else "")
    return messages


def verbose_summary(output: str) -> dict:
    """Counts and failures from pytest's ``-v`` lines (what a killed run printed), in :func:`junit_summary`'s form;
    each failure's message is the first error line of the traceback ``tests.live_failures`` printed."""
    outcomes = _VERBOSE_LINE.findall(output)
    if not outcomes:
        return {"counts": None, "failed": []}
    kinds = [kind for _, kind in outcomes]
    counts = {"tests": len(outcomes), "failures": kinds.count("FAILED"), "errors": kinds.count("ERROR"),
              "skipped": kinds.count("SKIPPED") + kinds.count("XFAIL")}  # fmt: skip
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    messages = _live_messages(output)  # keyed by node id (rootdir-relative; -v may print a cwd-relative path)

    def message(test: str) -> str:
        return next((text for node, text in messages.items() if test == node or test.endswith("/" + node)), "")

    failed = [{"test": test, "kind": kind.lower(), "message": message(test)}
              for test, kind in outcomes if kind in ("FAILED", "ERROR")]  # fmt: skip
    return {"counts": counts, "failed": failed}


def junit_summary(path: Path) -> dict:
    """``{"counts": {tests, failures, errors, skipped, passed}, "failed": [{"test", "message"}]}`` of a junit file
    (empty counts when pytest wrote none)."""
    if not path.is_file():
        return {"counts": None, "failed": []}
    root = ElementTree.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    counts = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    failed = []
    for case in root.iter("testcase"):
        for tag in ("failure", "error"):
            problem = case.find(tag)
            if problem is not None:
                failed.append({"test": f"{case.get('classname')}::{case.get('name')}", "kind": tag,
                               "message": (problem.get("message") or "")[:500]})  # fmt: skip
    return {"counts": counts, "failed": failed}


def _jpeg_files(count: int) -> tuple[list[bytes], list[int], str]:
    """``count`` CIFAR-10 test JPEGs from the pack (labels too), or smooth synthetic JPEGs (Pillow) without it."""
    if PACK.is_file():
        splits, _ = cifar_gpu.load_pack(PACK, splits=("test",))
        test = splits["test"]
        step = max(1, len(test) // count)  # spread over the classes (the pack is in class order)
        picks = list(range(0, len(test), step))[:count]
        return [test.file(i) for i in picks], [int(test.labels[i]) for i in picks], str(PACK.relative_to(ROOT))
    import io

    from PIL import Image

    rng = np.random.default_rng(0)
    files = []
    for _ in range(count):
        coarse = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(coarse).resize((32, 32), Image.BILINEAR).save(buffer, format="JPEG", quality=75)
        files.append(buffer.getvalue())
    return files, [i % 10 for i in range(count)], "synthetic (Pillow, quality 75, 4:2:0)"


def dct_step(device: str, batch: int, settings: bench_kernels.BenchSettings, precisions=("fp32", "bf16")) -> dict:
    """JPEG -> read_dct -> DCTCollate -> dct_resnet18_cifar: read+collate time on the CPU, the training step on
    ``device`` (fp32 and bf16 autocast), and the model's logits on ``device`` against the CPU (float32)."""
    import timm

    from freqnets.jpeg import DCTCollate, available_backends, read_dct

    files, labels, source = _jpeg_files(batch)
    start = time.perf_counter()
    samples = [(read_dct(data), label) for data, label in zip(files, labels, strict=True)]
    batch_x, batch_y = DCTCollate(layout="stacked")(samples)
    read_ms = (time.perf_counter() - start) * 1e3
    torch.manual_seed(0)
    model = timm.create_model("dct_resnet18_cifar")
    reference = model.eval()(batch_x).detach()
    target = torch.device(device)
    model = model.to(target)
    with torch.no_grad():
        logits = model.eval()(batch_x.to(target)).cpu()
    result = {"source": source, "jpeg_backend": available_backends()[0], "batch": len(files),
              "input_shape": list(batch_x.shape), "read_collate_ms": read_ms,
              "logits_max_relative_difference_to_cpu": float((logits - reference).abs().max() / reference.abs().max()),
              "steps": {}}  # fmt: skip
    x, y = batch_x.to(target), batch_y.to(target)
    for precision in precisions:
        step = bench_kernels.training_step(model, x, y, precision)
        first_loss = float(step())
        result["steps"][precision] = bench_kernels.measure(step, target, settings.warmup, settings.repeats) | {
            "first_loss": first_loss, "loss_after": float(step())}
    return result


class Summary:
    """The JSON and markdown summary of one call, rewritten after every part."""

    def __init__(self, out: Path, stem: str, argv: list[str], total: float | None = None) -> None:
        self.out, self.stem, self.total, self.start = out, stem, total, time.monotonic()
        self.data = {"command": "python scripts/device_check.py " + " ".join(argv), "environment": environment(),
                     "parts": {}}  # fmt: skip
        self.markdown: dict[str, str] = {}

    def run(self, name: str, budget: float, fn) -> object:
        """``fn(budget)`` as part ``name``: its result, or its error recorded (never raised). The budget is cut
        to what is left of the call's total (``total`` seconds from this summary's start), if one was given."""
        start = time.monotonic()
        if self.total is not None:
            budget = max(0.0, min(budget, self.total - (start - self.start)))
        print(f"[device_check] {name} (budget {budget:.0f} s)", flush=True)
        try:
            value = fn(budget)
            part = {"status": "ok", "result": value}
        except Exception as error:
            value, part = None, {"status": "error", "error": f"{type(error).__name__}: {error}",
                                 "traceback": traceback.format_exc(limit=10)}  # fmt: skip
            print(part["traceback"], flush=True)
        part |= {"seconds": round(time.monotonic() - start, 1), "budget_s": round(budget)}
        self.data["parts"][name] = part
        print(f"[device_check] {name}: {part['status']} in {part['seconds']} s", flush=True)
        self.write()
        return value

    def write(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / f"{self.stem}.json").write_text(json.dumps(self.data, indent=1, default=str))
        env = self.data["environment"]
        lines = [f"# {self.stem}", "", f"`{self.data['command']}`", "",
                 f"{env['date_utc']} UTC; {env.get('gpu', 'CPU')}; driver {env.get('driver', '-')}; "
                 f"torch {env['torch']} (CUDA {env['torch_cuda']}, cuDNN {env['cudnn']}); CuPy {env['cupy']}; "
                 f"timm {env['timm']}; Python {env['python']}; commit {env['git_commit']}", "",
                 "| part | status | seconds | budget |", "|---|---|---|---|"]  # fmt: skip
        for name, part in self.data["parts"].items():
            lines.append(f"| {name} | {part['status']} | {part['seconds']} | {part['budget_s']} |")
        for name, part in self.data["parts"].items():
            if part["status"] == "error":
                lines += ["", f"## {name}: error", "", "```", part["traceback"].strip(), "```"]
        for title, text in self.markdown.items():
            lines += ["", f"## {title}", "", text]
        (self.out / f"{self.stem}.md").write_text("\n".join(lines) + "\n")


def _pytest_markdown(result: dict) -> str:
    counts = result.get("counts") or {}
    line = (f"`{result['command']}`: " + ", ".join(f"{v} {k}" for k, v in counts.items())
            + f" in {result['seconds']} s" + (" (TIMED OUT)" if result["timed_out"] else ""))  # fmt: skip
    failed = [f"- {f['test']}: {f['message'][:200]}" for f in result["failed"][:30]]
    return "\n".join([line, *failed])


def check(out: Path, dry_run: bool, argv: list[str], only: list[str] | None) -> dict:
    """Part ``check``: GPU tests, benchmarks, DCT-input step, targets (see the module docstring)."""
    device = "cuda" if torch.cuda.is_available() and not dry_run else "cpu"
    if device == "cuda":
        torch.backends.cudnn.benchmark = True  # cuDNN picks its fastest algorithms, as a training run would
    budgets = DRY_RUN_BUDGETS if dry_run else CHECK_BUDGETS
    summary = Summary(out, "device_check", argv, total=None if dry_run else CHECK_TOTAL)
    targets = DRY_RUN_PYTEST_TARGETS if dry_run else PYTEST_TARGETS
    settings = bench_kernels.settings_for(device, dry_run)
    wanted = set(only or budgets)
    for name in ("tests_kernels", "tests_layers"):
        if name in wanted:
            result = summary.run(name, budgets[name], lambda b, name=name: run_pytest(name, targets[name], out, b))
            if result is not None:
                summary.markdown[name] = _pytest_markdown(result)
                summary.write()
    rows = []
    for name, fn in (("bench_product", bench_kernels.product_rows), ("bench_layer", bench_kernels.layer_rows),
                     ("bench_step", bench_kernels.model_step_rows)):  # fmt: skip
        if name in wanted:
            part_rows = summary.run(name, budgets[name], lambda b, fn=fn: fn(settings, bench_kernels.Deadline(b)))
            rows += part_rows or []
            summary.markdown["benchmarks"] = bench_kernels.report(rows)
            found = bench_kernels.targets(rows)
            summary.data["targets"] = found
            summary.markdown["targets (issue 13)"] = bench_kernels.targets_table(found)
            summary.write()
    if "profile_layer" in wanted:  # after the timings: the CUDA profiler may slow later launches in this process

        def profile(budget: float) -> list[dict]:
            return layer_profile.profile_rows(settings, bench_kernels.Deadline(budget))

        profiled = summary.run("profile_layer", budgets["profile_layer"], profile)
        if profiled is not None:
            summary.markdown["profile_layer"] = layer_profile.profile_report(profiled)
            summary.write()
    if "dct_step" in wanted:
        result = summary.run("dct_step", budgets["dct_step"], lambda b: dct_step(
            device, 4 if dry_run else 256, settings, ("fp32",) if dry_run else ("fp32", "bf16")))  # fmt: skip
        if result is not None:
            steps = ", ".join(f"{p} {s['ms']:.2f} ms" for p, s in result["steps"].items())
            summary.markdown["dct_step"] = (
                f"{result['batch']} JPEGs ({result['source']}, read_dct backend {result['jpeg_backend']}) -> "
                f"{result['input_shape']} in {result['read_collate_ms']:.0f} ms; dct_resnet18_cifar step on "
                f"{device}: {steps}; logits {device} vs CPU: max relative difference "
                f"{result['logits_max_relative_difference_to_cpu']:.1e}")  # fmt: skip
            summary.write()
    return summary.data


def _synthetic_split(count: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` uint8 images whose mean colour depends on the label (learnable), for the dry run without data."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % 10
    base = (labels[:, None].float() * torch.tensor([25.0, 12.0, 5.0])).view(count, 3, 1, 1)
    noise = torch.randint(0, 60, (count, 3, size, size), generator=generator).float()
    return (base + noise).clamp(0, 255).to(torch.uint8), labels


def table(out: Path, dry_run: bool, argv: list[str], args: argparse.Namespace) -> dict:
    """Part ``table``: Table 2.1 (see the module docstring)."""
    device = torch.device("cuda" if torch.cuda.is_available() and not dry_run else "cpu")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    summary = Summary(out, "table", argv)
    start = time.monotonic()
    recipe = cifar_gpu.Recipe(epochs=args.epochs, cuda_graph=args.cuda_graph)
    if dry_run:
        recipe = replace(recipe, epochs=2, batch_size=8, width=8)

    def load(_budget):
        if PACK.is_file() and not (dry_run and args.synthetic):
            splits, _ = cifar_gpu.load_pack(PACK)
            decoded = {name: cifar_gpu.decode_split(split, workers=os.cpu_count() or 4) for name, split in
                       splits.items()}  # fmt: skip
            if dry_run:  # a few images per class, spread over the classes
                decoded = {n: (im[:: max(1, len(im) // 32)], lb[:: max(1, len(im) // 32)])
                           for n, (im, lb) in decoded.items()}  # fmt: skip
            source = str(PACK.relative_to(ROOT))
        else:
            if not dry_run:
                raise FileNotFoundError(f"no {PACK}: run scripts/pack_device_data.py and carry device_data")
            decoded = {"train": _synthetic_split(32, 16, 0), "test": _synthetic_split(16, 16, 1)}
            source = "synthetic"
        sets = {name: cifar_gpu.DeviceImages(images, labels, device, channels_last=recipe.channels_last)
                for name, (images, labels) in decoded.items()}  # fmt: skip
        return sets, {"source": source, "train_images": len(sets["train"]), "test_images": len(sets["test"])}

    loaded = summary.run("load_data", 120, load)
    if loaded is not None:
        sets, _ = loaded
        summary.data["parts"]["load_data"]["result"] = loaded[1]
        rates = [None if r in ("conv", "conv2d") else float(r) for r in args.runs.split(",") if r.strip()]
        budget = args.budget - (time.monotonic() - start)
        results = summary.run("train", budget, lambda b: cifar_gpu.run_table(
            rates, sets["train"], sets["test"], recipe, args.state, b, args.backend, args.max_epochs,
            start_reserve=1.0 if dry_run else 20.0))  # fmt: skip
        if results is not None:
            summary.data["recipe"] = asdict(recipe)
            summary.data["targets"] = table_targets(results)
            summary.markdown["Table 2.1 (CIFAR-10, ResNet-18)"] = cifar_gpu.table_report(results, recipe)
            summary.markdown["targets (issue 13)"] = bench_kernels.targets_table(summary.data["targets"])
            summary.write()
    return summary.data


def table_targets(results: list[dict]) -> list[dict]:
    """Rate 0.5 loses at most 1.5 points of test accuracy against rate 0 at equal epochs."""
    by_rate = {r.get("rate"): r for r in results if r.get("finished")}
    value = None
    if 0.0 in by_rate and 0.5 in by_rate:
        value = 100 * (by_rate[0.0]["test_accuracy"] - by_rate[0.5]["test_accuracy"])
    return [{"target": "accuracy points lost, rate 0.5 vs rate 0", "where": "CIFAR-10 test, equal epochs",
             "value": value, "limit": 1.5, "met": None if value is None else value <= 1.5}]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="folder for the JSON and markdown summaries ($OUT)")
    parser.add_argument("--part", choices=("check", "table"), default="check")
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes: the same code path in seconds")
    parser.add_argument("--only", default=None, help="check: comma-separated parts (default: all)")
    parser.add_argument("--runs", default="conv,0,0.5,0.25,0.75",
                        help="table: networks in order, 'conv' (nn.Conv2d) or a compress rate")  # fmt: skip
    parser.add_argument("--epochs", type=int, default=cifar_gpu.Recipe.epochs, help="table: epochs per network")
    parser.add_argument("--budget", type=float, default=450.0, help="table: seconds for this call")
    parser.add_argument("--max-epochs", type=int, default=None, help="table: at most this many epochs per network")
    parser.add_argument("--backend", default="auto", help="table: band-limited backend (auto, cupy, torch)")
    parser.add_argument("--cuda-graph", action="store_true",
                        help="table: forward and backward captured in CUDA graphs (see the check's +graph rows)")
    parser.add_argument("--state", type=Path, default=ROOT / "runs" / "device_table",
                        help="table: checkpoint folder kept between calls (git-ignored)")  # fmt: skip
    parser.add_argument("--synthetic", action="store_true", help="table dry run: synthetic images even with the pack")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (dry run: 1)")
    args = parser.parse_args(argv)
    if args.threads or args.dry_run:  # one thread: a dry run on a shared CI machine is faster without contention
        torch.set_num_threads(args.threads or 1)
    start = time.monotonic()
    if args.part == "check":
        only = [p.strip() for p in args.only.split(",")] if args.only else None
        unknown = sorted(set(only or ()) - set(CHECK_BUDGETS))
        if unknown:
            parser.error(f"--only: unknown parts {', '.join(unknown)}; the parts are {', '.join(CHECK_BUDGETS)}")
        data = check(args.out, args.dry_run, argv, only)
    else:
        if args.cuda_graph and (args.dry_run or not torch.cuda.is_available()):
            parser.error("--cuda-graph needs a CUDA GPU (and no --dry-run)")
        data = table(args.out, args.dry_run, argv, args)
    failed = [name for name, part in data["parts"].items() if part["status"] != "ok"]
    print((args.out / f"{'device_check' if args.part == 'check' else 'table'}.md").read_text())
    print(f"[device_check] done in {time.monotonic() - start:.0f} s; parts with errors: {failed or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
