"""The report figures, on a small random UNet (layout and labels, not image quality)."""

import pytest
from PIL import Image

from p2.errors import UserError
from p2.figures import main


def test_eta_grid_has_four_rows_of_five(tmp_path, noise_dir, tiny_unet_file):
    out = tmp_path / "figs" / "eta_grid.png"
    main(["eta-grid", str(noise_dir), str(tiny_unet_file), str(out), "--steps", "2"])
    figure = Image.open(out)
    assert figure.height >= 4 * 32 and figure.width >= 5 * 32
    assert figure.getpixel((2, 2)) == (255, 255, 255)  # the label margin


def test_interpolation_has_two_rows_of_eleven(tmp_path, noise_dir, tiny_unet_file):
    out = tmp_path / "interpolation.png"
    main(["interpolation", str(noise_dir), str(tiny_unet_file), str(out), "--steps", "2"])
    figure = Image.open(out)
    assert 2 * 32 < figure.height < 4 * 32 and figure.width >= 11 * 36


def test_unknown_noise_name_is_named(tmp_path, noise_dir, tiny_unet_file):
    with pytest.raises(UserError, match="no noise file 07.pt"):
        main(
            [
                "interpolation",
                str(noise_dir),
                str(tiny_unet_file),
                str(tmp_path / "x.png"),
                "--pair",
                "00",
                "07",
            ]
        )
