import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from p1.errors import UserError
from p1.score import MnistmClassifier, folder_items, grader_tensor, main


def write_outputs(root, labels):
    for dataset in ("mnistm", "svhn"):
        os.makedirs(os.path.join(root, dataset))
        for i, label in enumerate(labels):
            value = 255 if label % 2 else 0
            Image.fromarray(np.full((28, 28, 3), value, np.uint8)).save(
                os.path.join(root, dataset, f"{label}_{i + 1:03d}.png"))


def parity_lenet():
    """A LeNet whose logits favour 1 for bright images and 0 for dark ones."""
    model = MnistmClassifier()
    for param in model.parameters():
        torch.nn.init.zeros_(param)
    with torch.no_grad():
        model.conv1.bias.fill_(0.0)
        model.conv1.weight.fill_(0.01)
        model.conv2.weight.fill_(0.01)
        model.fc1.weight.fill_(0.01)
        model.fc2.weight.fill_(0.01)
        model.fc3.weight[1].fill_(1.0)
        model.fc3.bias[0] = 1e-3
    return model


def test_grader_checkpoint_format_and_scores(tmp_path, capsys):
    write_outputs(str(tmp_path / "out"), [0, 1, 1, 2])
    path = str(tmp_path / "Classifier.pth")
    torch.save({"state_dict": parity_lenet().state_dict(), "optimizer": {}}, path)
    main([str(tmp_path / "out"), "--mnistm-classifier", path, "--device", "cpu"])
    output = capsys.readouterr().out
    assert "MNIST-M acc = 0.7500 (correct/total = 3/4)" in output


def test_grader_preprocessing_range(tmp_path):
    path = str(tmp_path / "x.png")
    Image.fromarray(np.full((32, 32, 3), 255, np.uint8)).save(path)
    x = grader_tensor(path)
    assert x.shape == (3, 28, 28) and torch.allclose(x, torch.ones_like(x))


def test_stray_entries_and_bad_classifiers(tmp_path):
    write_outputs(str(tmp_path / "out"), [3])
    (tmp_path / "out" / "mnistm" / "notes.txt").write_text("x")
    with pytest.raises(UserError, match="first character"):
        folder_items(str(tmp_path / "out" / "mnistm"))
    with pytest.raises(UserError, match="missing folder"):
        folder_items(str(tmp_path / "nothing"))
    torch.save({"state_dict": {"fc.weight": torch.zeros(1)}}, tmp_path / "bad.pth")
    with pytest.raises(UserError, match="does not match the grader LeNet"):
        main([str(tmp_path / "out"), "--mnistm-classifier", str(tmp_path / "bad.pth"),
              "--device", "cpu"])
    with pytest.raises(UserError, match="either an output folder or --data"):
        main([])


def test_json_results(tmp_path, capsys):
    write_outputs(str(tmp_path / "out"), [0, 1, 1, 2])
    path = str(tmp_path / "Classifier.pth")
    torch.save({"state_dict": parity_lenet().state_dict(), "optimizer": {}}, path)
    target = tmp_path / "results" / "score.json"
    main([str(tmp_path / "out"), "--mnistm-classifier", path, "--device", "cpu",
          "--json", str(target)])
    data = json.loads(target.read_text())
    assert data["tool"] == "p1.score"
    assert data["datasets"]["mnistm"] == {"accuracy": 0.75, "correct": 3, "total": 4,
                                          "judge": "grader LeNet (Classifier.pth)"}
    assert abs(data["mean_accuracy"] - sum(d["accuracy"] for d in data["datasets"].values())
               / len(data["datasets"])) < 1e-12
    assert f"wrote {target}" in capsys.readouterr().out


def test_json_path_checked_before_scoring(tmp_path):
    write_outputs(str(tmp_path / "out"), [0])
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="cannot write --json"):
        main([str(tmp_path / "out"), "--json", str(tmp_path / "file" / "score.json"),
              "--device", "cpu"])
    with pytest.raises(UserError, match="is a folder"):
        main([str(tmp_path / "out"), "--json", str(tmp_path), "--device", "cpu"])
