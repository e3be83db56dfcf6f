import json

import pytest
import torch

from p1.benchmark import main, parse_spec
from p1.errors import UserError
from p1.score import MnistmClassifier
from p1.svhn_classifier import build_classifier


def test_parse_spec():
    assert parse_spec("ddpm") == ("ddpm", 20, None, 0.0)
    assert parse_spec("dpm++:10:3") == ("dpm++", 10, 3.0, 0.0)
    assert parse_spec("dpm++:10:3:4") == ("dpm++", 10, 3.0, 4.0)
    for bad in ("ddim:x", "ddim:2:1:x", "ddim:2:1:1:1"):
        with pytest.raises(UserError, match="bad sampler spec"):
            parse_spec(bad)


def test_benchmarks_run(tmp_path, tiny_checkpoint, tiny_guide_classifier, capsys):
    main(["sampling", "--ckpt", tiny_checkpoint, "--images", "2", "--specs", "dpm++:2",
          "--precisions", "fp32", "--device", "cpu"])
    main(["training", "--batch-size", "2", "--steps", "1", "--device", "cpu"])
    lenet, svhn = tmp_path / "lenet.pth", tmp_path / "svhn.pt"
    torch.save({"state_dict": MnistmClassifier().state_dict()}, lenet)
    torch.save({"arch": "p1-svhn-cnn", "state_dict": build_classifier().state_dict()}, svhn)
    main(["quality", "--ckpt", tiny_checkpoint, "--per-class", "1", "--specs", "ddim:2:1",
          "dpm++:2:2:3", "--reference", "ddim:3", "--guide-classifier", tiny_guide_classifier,
          "--mnistm-classifier", str(lenet), "--svhn-classifier", str(svhn), "--device", "cpu"])
    output = capsys.readouterr().out
    assert "| dpm++ | 2 | fp32 |" in output and "| ddim | 2 | 1.0 | 0.0 |" in output
    assert "| dpm++ | 2 | 2.0 | 3.0 |" in output
    assert "reference for |Δ|: ddim:3" in output
    assert "bf16 autocast + channels_last" in output


def test_quality_json(tmp_path, tiny_checkpoint, capsys):
    lenet, svhn = tmp_path / "lenet.pth", tmp_path / "svhn.pt"
    torch.save({"state_dict": MnistmClassifier().state_dict()}, lenet)
    torch.save({"arch": "p1-svhn-cnn", "state_dict": build_classifier().state_dict()}, svhn)
    target = tmp_path / "out" / "quality.json"
    main(["quality", "--ckpt", tiny_checkpoint, "--per-class", "1", "--specs", "ddim:2:1",
          "--mnistm-classifier", str(lenet), "--svhn-classifier", str(svhn), "--device", "cpu",
          "--json", str(target)])
    data = json.loads(target.read_text())
    row = data["rows"][0]
    assert data["tool"] == "p1.benchmark quality" and data["images_per_spec"] == 20
    assert (row["sampler"], row["model_calls"], row["guidance"]) == ("ddim", 2, 1.0)
    printed = f"| {row['mnistm_accuracy']:.3f} | {row['svhn_accuracy']:.3f} |"
    assert printed in capsys.readouterr().out


def test_json_only_for_quality(tmp_path):
    with pytest.raises(UserError, match="quality only"):
        main(["sampling", "--json", str(tmp_path / "x.json"), "--device", "cpu"])
