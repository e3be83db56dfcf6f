import pytest
import torch

from p1.errors import UserError, run_cli
from p1.iclevr.evaluator import Evaluator
from p1.iclevr.train_evaluator import augment, main, split, train_evaluator


def tiny_set(n: int = 64):
    """Random uint8 images (n, 3, 64, 64) and 1-3 random objects per image."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 64, 64), dtype=torch.uint8, generator=generator)
    labels = torch.zeros(n, 24)
    for row in range(n):
        k = 1 + row % 3
        labels[row, torch.randperm(24, generator=generator)[:k]] = 1
    return images, labels


def test_tiny_training_run_returns_model_and_report():
    images, labels = tiny_set()
    lines = []
    network, report = train_evaluator(images, labels, epochs=2, batch_size=16, lr=1e-3,
                                      held_out=0.25, seed=0, device="cpu", log=lines.append)
    assert len(lines) == 2 and "held-out accuracy" in lines[0]
    assert report["train_images"] == 48 and report["held_out_images"] == 16
    assert report["epochs"] == 2 and len(report["history"]) == 2
    assert 0.0 <= report["held_out_accuracy"] <= 1.0
    _, held = split(64, 0.25, torch.Generator().manual_seed(0))  # the same seeded split
    assert report["held_out_labels"] == int(labels[held].sum())
    assert report["seconds"] > 0 and report["images_per_second"] > 0
    assert not network.training
    assert Evaluator(network).probabilities(images[:2].float() / 127.5 - 1).shape == (2, 24)


def test_split_is_seeded_and_disjoint():
    train, held = split(100, 0.1, torch.Generator().manual_seed(5))
    again, _ = split(100, 0.1, torch.Generator().manual_seed(5))
    assert len(train) == 90 and len(held) == 10 and torch.equal(train, again)
    assert sorted(train.tolist() + held.tolist()) == list(range(100))
    with pytest.raises(UserError, match="too few"):
        split(1, 0.5, torch.Generator())


def test_augment_keeps_hues():
    x = torch.rand(8, 3, 64, 64) * 0.8 - 0.8   # in [0.1, 0.5] once mapped to [0, 1]: no clipping
    out = augment(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    flipped = 0
    for original, augmented in zip(x, out):
        # one brightness factor for all pixels and channels: every ratio is the same
        ratios = [(augmented + 1) / (c + 1) for c in (original, original.flip(-1))]
        same = [float(r.std()) < 1e-5 and 0.9 - 1e-5 <= float(r.mean()) <= 1.1 + 1e-5
                for r in ratios]
        assert any(same)
        flipped += same[1]
    assert 0 < flipped < 8
    assert augment(torch.ones(2, 3, 4, 4), torch.Generator()).max() <= 1


def test_bad_shapes_are_rejected():
    images, labels = tiny_set(8)
    with pytest.raises(UserError, match="expected images"):
        train_evaluator(images, labels[:, :10])


@pytest.mark.parametrize("argv, message", [
    (["--epochs", "0"], "--epochs"),
    (["--batch-size", "0"], "--batch-size"),
    (["--lr", "-1"], "--lr"),
    (["--lr", "nan"], "--lr"),
    (["--held-out", "1"], "--held-out"),
    (["--threads", "-2"], "--threads"),
    (["--data", "no/such/folder"], "no data folder no/such/folder"),
    (["--device", "tpu"], "unknown device"),
])
def test_cli_rejects_bad_arguments(tmp_path, capsys, argv, message):
    base = ["--data", str(tmp_path), "--out", str(tmp_path / "out" / "checkpoint.pth")]
    with pytest.raises(SystemExit) as exited:
        run_cli(main, base + argv)
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(int(torch.__version__.split(".")[0]) < 2,
                    reason="bfloat16 CPU autocast takes seconds per step on torch 1.x")
def test_bf16_training_runs():
    images, labels = tiny_set(16)
    _, report = train_evaluator(images[..., :32, :32], labels, epochs=1, batch_size=4,
                                held_out=0.25, bf16=True, log=lambda line: None)
    assert report["bf16"] and report["history"][0]["train_loss"] > 0


def test_cli_writes_checkpoint_and_report_and_continues_from_it(tmp_path, monkeypatch, capsys):
    import json

    from p1.iclevr import train_evaluator as module
    from p1.iclevr.evaluator import load_evaluator

    images, labels = tiny_set(20)
    monkeypatch.setattr(module, "load_iclevr", lambda root: (images[..., :32, :32], labels))
    out = tmp_path / "run" / "checkpoint.pth"
    argv = ["--data", str(tmp_path), "--out", str(out), "--epochs", "1", "--batch-size", "8",
            "--held-out", "0.2", "--device", "cpu"]
    main(argv)
    report = json.loads((tmp_path / "run" / "checkpoint.pth.json").read_text())
    assert report["train_images"] == 16 and report["held_out_images"] == 4
    assert report["init"] is None and "wrote" in capsys.readouterr().out
    first = load_evaluator(str(out), "cpu").resnet18.state_dict()
    again = tmp_path / "again.pth"
    main(argv[:2] + ["--out", str(again), "--init", str(out), "--lr", "1e-12"] + argv[4:])
    continued = load_evaluator(str(again), "cpu").resnet18.state_dict()
    assert torch.allclose(continued["fc.0.weight"], first["fc.0.weight"], atol=1e-6)
    with pytest.raises(UserError, match="no evaluator checkpoint"):
        main(argv + ["--init", str(tmp_path / "absent.pth")])
