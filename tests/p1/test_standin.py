import os

import numpy as np
import pytest

from p1.data import load_digits
from p1.errors import UserError
from p1.standin import build, find_fonts, mnistm_images, svhn_image


def test_mnistm_is_absolute_difference_of_digit_and_patch():
    rng = np.random.default_rng(0)
    digits = np.zeros((3, 28, 28), np.uint8)
    digits[:, 10:18, 10:18] = 255
    photos = np.full((2, 64, 64, 3), (10, 100, 250), np.uint8)
    order, images = mnistm_images(digits, photos, 5, rng)
    assert images.shape == (5, 28, 28, 3) and len(order) == 5
    assert images[0, 0, 0].tolist() == [10, 100, 250]       # background: the photo
    assert images[0, 12, 12].tolist() == [245, 155, 5]      # digit stroke: |photo - 255|


def test_svhn_image_shape_and_variety():
    rng = np.random.default_rng(0)
    fonts = find_fonts()[:2] or [None]
    images = [svhn_image(d, fonts, rng) for d in range(4)]
    assert all(image.shape == (28, 28, 3) and image.dtype == np.uint8 for image in images)
    assert len({image.tobytes() for image in images}) == 4


def test_build_writes_the_homework_layout(tmp_path):
    sources = tmp_path / "src"
    sources.mkdir()
    np.savez(sources / "mnist10k.npz", images=np.zeros((4, 28, 28), np.uint8),
             labels=np.array([0, 1, 2, 3], np.uint8))
    np.savez(sources / "photos256.npz", images=np.zeros((2, 64, 64, 3), np.uint8))
    out = tmp_path / "digits"
    out.mkdir()
    build(str(out), 6, 5, seed=1, standin_dir=str(sources))
    images, conds = load_digits(str(out))
    assert images.shape == (11, 3, 28, 28)
    assert sorted(os.listdir(out)) == ["mnistm", "svhn"]
    with pytest.raises(UserError, match="already exists"):
        build(str(out), 1, 1, seed=1, standin_dir=str(sources))


def test_missing_sources_leave_nothing_behind(tmp_path):
    with pytest.raises(UserError, match="missing .*mnist10k.npz"):
        build(str(tmp_path), 3, 0, seed=0, standin_dir=str(tmp_path / "none"))
    assert os.listdir(tmp_path) == []
