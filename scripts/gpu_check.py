"""Every GPU path of the bundle in one prepared run: `bash scripts/gpu_check.sh [--quick]`.

Runs, each as its own process, on random weights of the real sizes (nothing of the course is
needed): hw2_1.sh twice (time for 1000 images, byte-identical re-run), hw2_2.sh on 10 random
256x256 noises with a full-size face UNet, hw2_3.sh on the course's input.json (100 images)
with a full-size SD v1 checkpoint in the CompVis layout and the time planner on, once with
torch's fused attention and once forced onto the chunked attention of torch 1.11, p3.benchmark
at batch 1/4/8, a few p3.train steps with and without gradient checkpointing, and p1.train
steps plain and under torchrun. Every figure goes to OUT/gpu_check.json and a table is
printed. `--quick` runs the same steps on tiny configs on the CPU (what the tests run).

The hw2_*.sh scripts run unchanged; a `python3` shim first on their PATH re-enters this file
(`child` mode), which runs the module they name and reports the process's peak GPU memory.
"""
import argparse
import hashlib
import json
import os
import platform
import re
import runpy
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from p1.model import build_model  # noqa: E402
from p2.model import FaceUNet  # noqa: E402
from p3.model import CONFIGS, StableDiffusion  # noqa: E402

PEAK_LINE = "gpu_check: peak GPU memory"
# The course's hw2_data/textual_inversion/input.json (used when that file is not present).
COURSE_INPUT = {
    "0": {"src_image": "dog", "token_name": "<new1>", "prompt": [
        "A <new1> shepherd posing proudly on a hilltop with Mount Fuji in the background.",
        "A <new1> perched on a park bench with the Colosseum looming behind."]},
    "1": {"src_image": "David Revoy", "token_name": "<new2>", "prompt": [
        "The streets of Paris in the style of <new2>.",
        "Manhattan skyline in the style of <new2>."]},
}
LIMITS = {"hw2_2": 300.0, "hw2_3": 900.0}  # the course's time limits, seconds


def child(argv):
    """`python3 -m MODULE ARGS` as hw2_*.sh call it, then print the peak GPU memory.

    GPU_CHECK_ATTENTION=chunked hides torch's fused attention, so p3 takes the chunked path
    that torch 1.11 (the graders' stack) runs.
    """
    if len(argv) < 2 or argv[0] != "-m":
        os.execv(sys.executable, [sys.executable, *argv])  # anything else: the real python3
    if os.environ.get("GPU_CHECK_ATTENTION") == "chunked" and hasattr(
            F, "scaled_dot_product_attention"):
        del F.scaled_dot_product_attention
    module, sys.argv = argv[1], [argv[1], *argv[2:]]
    sys.path.insert(0, os.getcwd())
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            peak = torch.cuda.max_memory_allocated() / 2**30
            print(f"{PEAK_LINE} {peak:.2f} GiB", file=sys.stderr)


class Runner:
    """Runs the steps' commands with the shim on PATH, logging each one under OUT/logs."""

    def __init__(self, out_dir, device, budget):
        self.out_dir, self.device, self.deadline = out_dir, device, time.time() + budget
        self.logs = os.path.join(out_dir, "logs")
        shim = os.path.join(out_dir, "shim")
        os.makedirs(self.logs, exist_ok=True)
        os.makedirs(shim, exist_ok=True)
        with open(os.path.join(shim, "python3"), "w") as handle:
            handle.write(f'#!/bin/sh\nexec "{sys.executable}" "{os.path.abspath(__file__)}" '
                         'child "$@"\n')
        os.chmod(os.path.join(shim, "python3"), 0o755)
        self.env = dict(os.environ, PATH=shim + os.pathsep + os.environ.get("PATH", ""),
                        PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
                        PYTHONUNBUFFERED="1")

    def seconds_left(self):
        return self.deadline - time.time()

    def run(self, name, command, env=None):
        """(seconds, stdout + stderr, peak GiB or None); raises RuntimeError on failure."""
        start = time.perf_counter()
        result = subprocess.run([str(c) for c in command], cwd=ROOT,
                                env=dict(self.env, **(env or {})), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True,
                                timeout=max(self.seconds_left(), 10))
        seconds = time.perf_counter() - start
        with open(os.path.join(self.logs, f"{name}.log"), "w") as handle:
            handle.write(" ".join(map(str, command)) + "\n" + result.stdout)
        if result.returncode != 0:
            tail = [line for line in result.stdout.splitlines() if line.strip()][-3:]
            raise RuntimeError(f"exit {result.returncode}: " + " | ".join(tail))
        peaks = re.findall(rf"{PEAK_LINE} ([0-9.]+) GiB", result.stdout)
        return seconds, result.stdout, float(peaks[-1]) if peaks else None


def tree_digest(folder):
    """sha256 over every file's relative path and bytes."""
    digest = hashlib.sha256()
    for root, _, files in sorted(os.walk(folder)):
        for name in sorted(files):
            path = os.path.join(root, name)
            digest.update(os.path.relpath(path, folder).encode())
            with open(path, "rb") as handle:
                digest.update(handle.read())
    return digest.hexdigest()


def count_files(folder, suffix=".png"):
    return sum(name.endswith(suffix) for _, _, files in os.walk(folder) for name in files)


def check_hw2_1(runner, work, quick):
    """hw2_1.sh twice: seconds for the images and whether the re-run wrote the same bytes."""
    extra = ["--device", runner.device]
    if quick:
        torch.manual_seed(0)
        config = {"base_channels": 8, "channel_mults": (1, 2), "blocks_per_level": 1,
                  "attention_levels": (1,), "dropout": 0.0}
        ckpt = os.path.join(work, "p1_tiny.pt")
        torch.save({"ema": build_model(config).state_dict(), "model_config": config,
                    "schedule_config": {"kind": "linear", "num_timesteps": 20}, "step": 0}, ckpt)
        extra += ["--ckpt", ckpt, "--per-class", "1", "--steps", "2", "--classifier-guidance", "0"]
    runs = []
    for attempt in ("a", "b"):
        out = os.path.join(work, f"p1_{attempt}")
        seconds, _, peak = runner.run(f"hw2_1_{attempt}", ["bash", "hw2_1.sh", out, *extra])
        runs.append((seconds, tree_digest(out), count_files(out), peak))
    return {"images": runs[0][2], "seconds": round(runs[0][0], 1),
            "seconds_rerun": round(runs[1][0], 1), "identical_rerun": runs[0][1] == runs[1][1],
            "peak_gib": runs[0][3]}


def check_hw2_2(runner, work, quick):
    """hw2_2.sh on random noises with a random face UNet of the course's width."""
    size, count, channels = (64, 2, 32) if quick else (256, 10, 128)
    noise_dir = os.path.join(work, "p2_noise")
    os.makedirs(noise_dir, exist_ok=True)
    generator = torch.Generator().manual_seed(0)
    for i in range(count):
        torch.save(torch.randn(1, 3, size, size, generator=generator),
                   os.path.join(noise_dir, f"{i:02d}.pt"))
    torch.manual_seed(0)
    unet = os.path.join(work, "UNet.pt")
    torch.save(FaceUNet(channels=channels).state_dict(), unet)
    extra = ["--steps", "2"] if quick else []
    out = os.path.join(work, "p2_out")
    seconds, _, peak = runner.run("hw2_2", ["bash", "hw2_2.sh", noise_dir, out, unet,
                                            "--device", runner.device, *extra])
    return {"images": count_files(out), "size": size, "seconds": round(seconds, 1),
            "limit_s": LIMITS["hw2_2"], "peak_gib": peak}


def write_sd_checkpoint(work, quick):
    """A random SD v1 (or tiny) model saved like sd-v1-4.ckpt: {"state_dict": CompVis keys}."""
    torch.manual_seed(0)
    state = StableDiffusion(CONFIGS["tiny" if quick else "v1"]()).state_dict()
    path = os.path.join(work, "sd.ckpt")
    torch.save({"state_dict": {**state, "betas": torch.zeros(1000)}}, path)
    return path


def course_input(work):
    path = os.path.join(ROOT, "hw2_data", "textual_inversion", "input.json")
    if os.path.isfile(path):
        return path
    path = os.path.join(work, "input.json")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(COURSE_INPUT, handle)
    return path


def check_hw2_3(runner, work, quick, ckpt, attention):
    """hw2_3.sh on the course's input.json, planner on, no learned embeddings (the src_image
    fallback), with the installed torch's attention or the chunked one."""
    out = os.path.join(work, f"p3_{attention}")
    empty = os.path.join(work, "no_embeddings")
    os.makedirs(empty, exist_ok=True)
    extra = ["--config", "tiny", "--max-steps", "2", "--min-steps", "1", "--batch-size", "25"]
    extra = extra if quick else []
    budget = min(840.0, max(runner.seconds_left() - 120, 60))
    seconds, log, peak = runner.run(
        f"hw2_3_{attention}",
        ["bash", "hw2_3.sh", course_input(work), out, ckpt, "--device", runner.device,
         "--embeddings-dir", empty, "--time-budget", f"{budget:.0f}", *extra],
        env={"GPU_CHECK_ATTENTION": attention})
    plan = re.search(r"in (\d+) batches of <= (\d+), (\w+) (\d+) steps", log)
    return {"images": count_files(out), "seconds": round(seconds, 1), "limit_s": LIMITS["hw2_3"],
            "planner_budget_s": round(budget), "steps": int(plan.group(4)) if plan else None,
            "batch_size": int(plan.group(2)) if plan else None, "peak_gib": peak}


def check_p3_benchmark(runner, quick, ckpt):
    """Seconds per image at batch 1, 4 and 8 (p3.benchmark's table)."""
    config = ["--config", "tiny", "--steps", "2"] if quick else ["--steps", "25"]
    _, log, _ = runner.run("p3_benchmark", [sys.executable, "-m", "p3.benchmark", "--device",
                                            runner.device, "--checkpoint", ckpt,
                                            "--batch-sizes", "1,4,8", *config])
    rows = re.findall(r"^\| (\d+) \| (\d+) \| ([0-9.]+) \| ([0-9.]+) \| [0-9.]+ \| ([^|]+) \|$",
                      log, re.M)
    return {f"batch_{b}": {"steps": int(s), "s_per_image": float(per), "peak_gib": peak.strip()}
            for b, s, _, per, peak in rows}


def check_p3_train(runner, work, quick, ckpt, checkpointing):
    """A few textual-inversion steps (fp16 on a GPU): steps/s and peak memory."""
    src = os.path.join(work, "p3_src")
    if not os.path.isdir(os.path.join(src, "0")):
        os.makedirs(os.path.join(src, "0"))
        rng = np.random.default_rng(0)
        for i in range(3):
            pixels = rng.integers(0, 256, (64 if quick else 512,) * 2 + (3,), dtype=np.uint8)
            Image.fromarray(pixels).save(os.path.join(src, "0", f"{i:02d}.jpg"))
    name = "p3_train_ckpt" if checkpointing else "p3_train"
    steps = 2 if quick else 6
    command = [sys.executable, "-m", "p3.train", "--json", course_input(work), "--src", src,
               "--concept", "0", "--init-word", "dog", "--ckpt", ckpt,
               "--out", os.path.join(work, name), "--device", runner.device,
               "--max-steps", str(steps), "--save-every", str(steps), "--validate-every", "0"]
    command += ["--config", "tiny"] if quick else []
    command += ["--gradient-checkpointing"] if checkpointing else []
    seconds, log, _ = runner.run(name, command)
    rate = re.search(r"\(([0-9.]+) steps/s", log)
    peak = re.search(r"peak GPU memory while training ([0-9.]+) GiB", log)
    return {"steps": steps, "steps_per_s": float(rate.group(1)) if rate else None,
            "peak_gib": float(peak.group(1)) if peak else None, "seconds": round(seconds, 1)}


def write_digit_data(root, per_dataset):
    """Random images in the hw2_data/digits layout."""
    rng = np.random.default_rng(0)
    for dataset in ("mnistm", "svhn"):
        os.makedirs(os.path.join(root, dataset, "data"), exist_ok=True)
        with open(os.path.join(root, dataset, "train.csv"), "w") as handle:
            handle.write("image_name,label\n")
            for i in range(per_dataset):
                name = f"{i:05d}.png"
                Image.fromarray(rng.integers(0, 256, (28, 28, 3), dtype=np.uint8)).save(
                    os.path.join(root, dataset, "data", name))
                handle.write(f"{name},{i % 10}\n")
    return root


def check_p1_train(runner, work, quick, launcher):
    """p1.train steps on random digits, plainly or under torchrun: training images/s."""
    data = os.path.join(work, "digits")
    if not os.path.isdir(data):
        write_digit_data(data, 64 if quick else 2000)
    out = os.path.join(work, f"p1_train_{launcher}")
    steps, batch = (4, 8) if quick else (300, 128)
    args = ["--data", data, "--out", out, "--steps", str(steps), "--batch-size", str(batch),
            "--device", runner.device, "--sample-every", "0", "--ckpt-every", str(steps),
            "--log-every", "2" if quick else "50", "--warmup", "1"]
    if quick:
        args += ["--base-channels", "8", "--channel-mults", "1", "2", "--attention-levels", "1",
                 "--threads", "1"]
    module = [sys.executable, "-m", "p1.train"]
    if launcher == "torchrun":
        module = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                  "--nproc_per_node", "1", "-m", "p1.train"]
    seconds, _, _ = runner.run(f"p1_train_{launcher}", [*module, *args])
    with open(os.path.join(out, "loss.csv")) as handle:
        rates = [float(line.split(",")[3]) for line in handle.read().splitlines()[1:]]
    later = rates[1:] or rates  # the first window includes start-up
    return {"steps": steps, "batch_size": batch, "seconds": round(seconds, 1),
            "images_per_s": round(sorted(later)[len(later) // 2], 1)}


def steps_for(quick):
    """(name, function(runner, work, quick, state) -> figures) in run order."""
    def sd(state, work):
        if "ckpt" not in state:
            state["ckpt"] = write_sd_checkpoint(work, quick)
        return state["ckpt"]

    return [
        ("hw2_1", lambda r, w, s: check_hw2_1(r, w, quick)),
        ("hw2_2", lambda r, w, s: check_hw2_2(r, w, quick)),
        ("hw2_3", lambda r, w, s: check_hw2_3(r, w, quick, sd(s, w), "installed")),
        ("p3_benchmark", lambda r, w, s: check_p3_benchmark(r, quick, sd(s, w))),
        ("p3_train", lambda r, w, s: check_p3_train(r, w, quick, sd(s, w), False)),
        ("p3_train_checkpointing", lambda r, w, s: check_p3_train(r, w, quick, sd(s, w), True)),
        ("p1_train", lambda r, w, s: check_p1_train(r, w, quick, "plain")),
        ("p1_train_torchrun", lambda r, w, s: check_p1_train(r, w, quick, "torchrun")),
        ("hw2_3_chunked", lambda r, w, s: check_hw2_3(r, w, quick, sd(s, w), "chunked")),
    ]


def environment(device):
    info = {"python": platform.python_version(), "torch": torch.__version__, "device": device,
            "fused_attention": hasattr(torch.nn.functional, "scaled_dot_product_attention")}
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def print_table(report):
    print(f"\n{report['environment']}")
    print("| check | status | figures |")
    print("|---|---|---|")
    for name, entry in report["checks"].items():
        figures = ", ".join(f"{k} {v}" for k, v in entry.items() if k not in ("ok", "error"))
        status = "ok" if entry.get("ok") else entry.get("error", "failed")
        print(f"| {name} | {status} | {figures} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny configs on the CPU (seconds): checks the script itself")
    parser.add_argument("--out", default=os.path.join(ROOT, "runs", "gpu_check"),
                        help="folder for gpu_check.json and the logs (default runs/gpu_check)")
    parser.add_argument("--device", default=None, help="default: cpu with --quick, else cuda")
    parser.add_argument("--budget", type=float, default=480.0,
                        help="seconds for the whole check; later steps are skipped past it")
    parser.add_argument("--only", nargs="+", default=None, help="run only these checks")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    device = args.device or ("cpu" if args.quick else "cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("error: no CUDA GPU visible to torch (use --quick for the CPU rehearsal)",
              file=sys.stderr)
        return 1
    steps = steps_for(args.quick)
    unknown = set(args.only or []) - {name for name, _ in steps}
    if unknown:
        print(f"error: unknown check(s) {sorted(unknown)}; known: {[n for n, _ in steps]}",
              file=sys.stderr)
        return 1
    os.makedirs(args.out, exist_ok=True)
    runner = Runner(args.out, device, args.budget)
    work = tempfile.mkdtemp(prefix="work-", dir=args.out)
    report = {"environment": environment(device), "quick": args.quick, "checks": {}}
    state = {}
    try:
        for name, check in steps:
            if args.only and name not in args.only:
                continue
            if runner.seconds_left() <= 0:
                report["checks"][name] = {"ok": False, "error": "skipped: budget spent"}
                continue
            print(f"gpu_check: {name} ...", flush=True)
            try:
                report["checks"][name] = {"ok": True, **check(runner, work, state)}
            except (RuntimeError, subprocess.TimeoutExpired, OSError) as err:
                report["checks"][name] = {"ok": False, "error": str(err)[:300]}
            with open(os.path.join(args.out, "gpu_check.json"), "w") as handle:
                json.dump(report, handle, indent=2)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print_table(report)
    print(f"wrote {os.path.join(args.out, 'gpu_check.json')}")
    return 0 if all(entry["ok"] for entry in report["checks"].values()) else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        child(sys.argv[2:])
    else:
        sys.exit(main())
