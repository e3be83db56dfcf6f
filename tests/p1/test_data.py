import os

import pytest
import torch
from PIL import Image

from p1.data import (
    COND_DIM,
    digit_condition,
    load_digits,
    load_image,
    read_label_csv,
    to_model_range,
    to_uint8,
)
from p1.errors import UserError


def test_digit_condition_layout():
    cond = digit_condition([3, 9], [0, 1])
    assert cond.shape == (2, COND_DIM)
    assert cond[0].nonzero().flatten().tolist() == [3, 10]
    assert cond[1].nonzero().flatten().tolist() == [9, 11]


def test_load_digits_reads_both_datasets(digit_layout):
    images, conds = load_digits(digit_layout)
    assert images.shape == (24, 3, 28, 28) and images.dtype == torch.uint8
    assert conds[:12, 10].sum() == 12 and conds[12:, 11].sum() == 12
    assert conds[:, :10].argmax(1).tolist()[:12] == [i % 10 for i in range(12)]
    images, _ = load_digits(digit_layout, datasets=["svhn"], limit=5)
    assert images.shape[0] == 5


def test_value_range_round_trip():
    pixels = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16)
    x = to_model_range(pixels)
    assert x.min() == -1 and x.max() == 1
    assert torch.equal(to_uint8(x), pixels)


@pytest.mark.parametrize("content, message", [
    ("name,label\n00000.png,1\n", "first line"),
    ("image_name,label\n00000.png,x\n", ":2:"),
    ("image_name,label\n00000.png,12\n", ":2:"),
    ("image_name,label\n00000.png\n", ":2:"),
    ("image_name,label\n", "lists no images"),
    ("", "first line"),
])
def test_malformed_csv_names_the_problem(tmp_path, content, message):
    path = tmp_path / "train.csv"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        read_label_csv(str(path))


def test_missing_folders_and_files(tmp_path, digit_layout):
    with pytest.raises(UserError, match="does not exist .*python3 -m p1.standin"):
        load_digits(str(tmp_path / "nope"))
    os.remove(os.path.join(digit_layout, "svhn", "train.csv"))
    with pytest.raises(UserError, match="missing label file"):
        load_digits(digit_layout)
    with pytest.raises(UserError, match="unknown dataset"):
        load_digits(digit_layout, datasets=["usps"])


def test_bad_images(tmp_path, digit_layout):
    broken = os.path.join(digit_layout, "mnistm", "data", "00003.png")
    with open(broken, "wb") as handle:
        handle.write(b"not a png")
    with pytest.raises(UserError, match="cannot decode image .*00003.png"):
        load_digits(digit_layout)
    os.remove(broken)
    with pytest.raises(UserError, match="missing image"):
        load_digits(digit_layout)


def test_load_image_converts_and_resizes(tmp_path):
    path = str(tmp_path / "grey.png")
    Image.new("L", (32, 32), 200).save(path)
    pixels = load_image(path)
    assert pixels.shape == (28, 28, 3) and int(pixels[0, 0, 0]) == 200
