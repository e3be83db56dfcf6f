"""CLIP zero-shot classification on a tiny random CLIP (mechanics, not accuracy)."""

import json

import pytest
import torch
from PIL import Image

from p3.errors import UserError
from p3.zeroshot import main, read_labels


def make_val(tmp_path):
    labels = {"0": "bicycle", "1": "willow_tree", "2": "bee"}
    (tmp_path / "id2label.json").write_text(json.dumps(labels))
    val = tmp_path / "val"
    val.mkdir()
    generator = torch.Generator().manual_seed(0)
    for cls in range(3):
        for idx in range(450, 454):
            pixels = torch.randint(0, 256, (32, 32, 3), generator=generator, dtype=torch.uint8)
            Image.fromarray(pixels.numpy()).save(val / f"{cls}_{idx}.png")
    return val, tmp_path / "id2label.json"


def test_prints_accuracy_and_writes_the_examples_figure(tmp_path, tiny_clip, capsys):
    val, labels = make_val(tmp_path)
    figure = tmp_path / "zeroshot.png"
    main([str(val), str(labels), f"--clip={tiny_clip}", f"--figure={figure}", "--batch-size=5"])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("zero-shot accuracy: ") and out[0].endswith("/12)")
    correct = int(out[0].split("(")[1].split("/")[0])
    width, height = Image.open(figure).size
    assert width == 224 * max(min(correct, 5), min(12 - correct, 5)) and height == 2 * (224 + 28)


def test_bad_names_and_label_files(tmp_path, tiny_clip):
    val, labels = make_val(tmp_path)
    with pytest.raises(UserError, match="image folder not found"):
        main([str(tmp_path / "missing"), str(labels)])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no images in"):
        main([str(tmp_path / "empty"), str(labels)])
    (val / "cat.png").write_bytes((val / "0_450.png").read_bytes())
    with pytest.raises(UserError, match="cat.png: expected a name"):
        main([str(val), str(labels), f"--clip={tiny_clip}"])
    labels.write_text("[1, 2]")
    with pytest.raises(UserError, match="must be a JSON object"):
        read_labels(labels)


def test_results_as_json(tmp_path, tiny_clip):
    val, labels = make_val(tmp_path)
    target = tmp_path / "zeroshot.json"
    main([str(val), str(labels), f"--clip={tiny_clip}", f"--figure={tmp_path / 'z.png'}",
          f"--json={target}"])
    data = json.loads(target.read_text())
    assert data["total"] == 12 and data["accuracy"] == data["correct"] / 12
    assert len(data["successes"]) == min(data["correct"], 5)
    assert len(data["failures"]) == min(12 - data["correct"], 5)
    assert all(case["true"] != case["predicted"] for case in data["failures"])
