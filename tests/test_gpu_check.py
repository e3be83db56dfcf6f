"""scripts/gpu_check.sh --quick: every GPU path's check, rehearsed on tiny configs on the CPU."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECKS = ["hw2_1", "hw2_2", "hw2_3", "p3_benchmark", "p3_train", "p3_train_checkpointing",
          "p1_train", "p1_train_torchrun", "hw2_3_chunked"]


def gpu_check(*args, timeout=300):
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    return subprocess.run(["bash", os.path.join(ROOT, "scripts", "gpu_check.sh"), *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=timeout)


@pytest.mark.slow
def test_quick_run_passes_every_check_and_writes_the_figures(tmp_path):
    result = gpu_check("--quick", "--out", tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert list(report["checks"]) == CHECKS
    assert all(entry["ok"] for entry in report["checks"].values())
    checks = report["checks"]
    assert checks["hw2_1"]["images"] == 20 and checks["hw2_1"]["identical_rerun"] is True
    assert checks["hw2_2"]["images"] == 2
    for name in ("hw2_3", "hw2_3_chunked"):
        assert checks[name]["images"] == 100 and checks[name]["limit_s"] == 900
    assert set(checks["p3_benchmark"]) == {"ok", "batch_1", "batch_4", "batch_8"}
    assert checks["p3_train"]["steps_per_s"] > 0 and checks["p1_train_torchrun"]["images_per_s"] > 0
    assert "| hw2_3_chunked | ok |" in result.stdout
    assert not [p for p in os.listdir(tmp_path) if p.startswith("work-")]  # work folder removed


def test_no_gpu_and_unknown_check_are_one_line_errors(tmp_path):
    import torch

    if not torch.cuda.is_available():
        result = gpu_check("--out", tmp_path)
        assert result.returncode == 1 and result.stderr.startswith("error: no CUDA GPU")
    result = gpu_check("--quick", "--only", "nope", "--out", tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "unknown check(s) ['nope']" in result.stderr
