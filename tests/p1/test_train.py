import csv
import os

import pytest
import torch

from p1.errors import UserError
from p1.generate import load_checkpoint
from p1.train import batch_indices, ema_update, learning_rate, main

TINY = ["--base-channels", "8", "--channel-mults", "1", "2", "--attention-levels", "1",
        "--timesteps", "20", "--batch-size", "4", "--log-every", "1", "--ckpt-every", "2",
        "--warmup", "100", "--sample-every", "0", "--device", "cpu", "--dropout", "0"]


def test_train_writes_outputs_and_resumes_exactly(tmp_path, digit_layout):
    straight, split = str(tmp_path / "straight"), str(tmp_path / "split")
    main(["--data", digit_layout, "--out", straight, "--steps", "4"] + TINY)
    main(["--data", digit_layout, "--out", split, "--steps", "2"] + TINY)
    main(["--data", digit_layout, "--out", split, "--steps", "4"] + TINY)
    a = torch.load(os.path.join(straight, "checkpoint.pt"))
    b = torch.load(os.path.join(split, "checkpoint.pt"))
    assert a["step"] == b["step"] == 4
    for key in ("model", "ema"):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), (key, name)
    with open(os.path.join(split, "loss.csv")) as handle:
        assert [row["step"] for row in csv.DictReader(handle)] == ["1", "2", "3", "4"]
    assert os.path.getsize(os.path.join(split, "loss_curve.png")) > 0
    model, schedule, _ = load_checkpoint(os.path.join(split, "ema.pt"), torch.device("cpu"))
    assert schedule.num_timesteps == 20 and not model.training


def test_init_starts_a_new_run_from_an_ema_file(tmp_path, digit_layout):
    first, second = str(tmp_path / "first"), str(tmp_path / "second")
    main(["--data", digit_layout, "--out", first, "--steps", "2"] + TINY)
    initial = torch.load(os.path.join(first, "ema.pt"))
    main(["--data", digit_layout, "--out", second, "--steps", "1", "--init",
          os.path.join(first, "ema.pt"), "--lr", "1e-12"] + TINY + ["--base-channels", "16"])
    state = torch.load(os.path.join(second, "checkpoint.pt"))
    assert state["step"] == 1 and state["model_config"] == initial["model_config"]
    assert torch.load(os.path.join(second, "ema.pt"))["step"] == 2 + 1
    for name, weight in initial["ema"].items():
        assert torch.allclose(state["model"][name], weight, atol=1e-6), name
        assert torch.allclose(state["ema"][name], weight, atol=1e-6), name
    with pytest.raises(UserError, match="no checkpoint at .*--init takes an ema.pt"):
        main(["--data", digit_layout, "--out", str(tmp_path / "x"), "--init",
              str(tmp_path / "none.pt")] + TINY)
    torch.save({"kind": "iclevr-gan"}, tmp_path / "gan.pt")
    with pytest.raises(UserError, match="is not a p1 checkpoint"):
        main(["--data", digit_layout, "--out", str(tmp_path / "x"), "--init",
              str(tmp_path / "gan.pt")] + TINY)
    torch.save(dict(initial, cond_layout="iclevr24"), tmp_path / "lab.pt")
    with pytest.raises(UserError, match="trained on iclevr24"):
        main(["--data", digit_layout, "--out", str(tmp_path / "x"), "--init",
              str(tmp_path / "lab.pt")] + TINY)


def test_sample_grid_is_written(tmp_path, digit_layout):
    out = str(tmp_path / "run")
    main(["--data", digit_layout, "--out", out, "--steps", "1"] + TINY + ["--sample-every", "1",
                                                                    "--sample-steps", "2"])
    assert os.listdir(os.path.join(out, "samples")) == ["step_000001.png"]


def test_bad_arguments(tmp_path, digit_layout):
    with pytest.raises(UserError, match="--steps"):
        main(["--data", digit_layout, "--out", str(tmp_path / "r"), "--steps", "0"])
    with pytest.raises(UserError, match="--cond-drop"):
        main(["--data", digit_layout, "--cond-drop", "1.5"])
    with pytest.raises(UserError, match="does not exist"):
        main(["--data", str(tmp_path / "none"), "--out", str(tmp_path / "r"), "--device", "cpu"])
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA is not available"):
            main(["--data", digit_layout, "--device", "cuda"])


def test_schedule_helpers():
    assert learning_rate(0, 1.0, 10, 100) == pytest.approx(0.1)
    assert learning_rate(10, 1.0, 10, 100) == pytest.approx(1.0)
    assert learning_rate(100, 1.0, 10, 100) == pytest.approx(0.1)
    first = batch_indices(0, 4, 10, seed=0, rank=0, world=1)
    both = [batch_indices(0, 4, 10, seed=0, rank=r, world=2) for r in range(2)]
    assert sorted(torch.cat(both).tolist()) == sorted(first.tolist())
    epoch = torch.cat([batch_indices(s, 5, 10, 0, 0, 1) for s in range(2)])
    assert sorted(epoch.tolist()) == list(range(10))


def test_ema_update():
    ema, model = torch.nn.Linear(1, 1), torch.nn.Linear(1, 1)
    torch.nn.init.constant_(ema.weight, 0.0)
    torch.nn.init.constant_(model.weight, 1.0)
    ema_update(ema, model, 0.9)
    assert ema.weight.item() == pytest.approx(0.1)


def test_distributed_data_parallel_on_cpu(tmp_path, digit_layout):
    """torchrun with two CPU processes (gloo): the same command line a GPU machine uses."""
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=repo)
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "p1.train", "--data", digit_layout, "--out", str(tmp_path / "ddp"),
         "--steps", "2"] + TINY, capture_output=True, text=True, env=env, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 process(es)" in done.stdout
    assert torch.load(str(tmp_path / "ddp" / "checkpoint.pt"))["step"] == 2
