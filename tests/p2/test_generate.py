"""`hw2_2.sh` end to end on a small random face UNet and 32x32 noises."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from p2.generate import main

ROOT = Path(__file__).resolve().parents[2]


def hw2_2(*args):
    """Run the shell entry point with this interpreter as `python3`."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run(
        ["bash", str(ROOT / "hw2_2.sh"), *map(str, args)], capture_output=True, text=True, env=env
    )


def read(folder):
    return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.iterdir())}


def test_writes_one_png_per_noise_and_is_reproducible(tmp_path, noise_dir, tiny_unet_file):
    out = tmp_path / "out"
    result = hw2_2(noise_dir, out, tiny_unet_file, "--steps", "3")
    assert result.returncode == 0, result.stderr
    assert "wrote 4 images" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == ["00.png", "01.png", "02.png", "03.png"]
    first = read(out)
    assert all(image.shape == (32, 32, 3) and image.dtype == np.uint8 for image in first.values())
    assert all(image.min() == 0 and image.max() == 255 for image in first.values())  # min-max

    main([str(noise_dir), str(out), str(tiny_unet_file), "--steps", "3"])
    assert {name: image.tobytes() for name, image in read(out).items()} == {
        name: image.tobytes() for name, image in first.items()
    }


def test_batch_size_changes_nothing_but_rounding(tmp_path, noise_dir, tiny_unet_file):
    for batch in ("1", "4"):
        main(
            [
                str(noise_dir),
                str(tmp_path / batch),
                str(tiny_unet_file),
                "--steps",
                "3",
                "--batch-size",
                batch,
            ]
        )
    one, four = read(tmp_path / "1"), read(tmp_path / "4")
    for name in one:
        assert np.abs(one[name].astype(int) - four[name].astype(int)).max() <= 2, name


def test_eta_noise_is_seeded(tmp_path, noise_dir, tiny_unet_file):
    def run(folder, seed):
        main(
            [
                str(noise_dir),
                str(folder),
                str(tiny_unet_file),
                "--steps",
                "3",
                "--eta",
                "1",
                "--seed",
                seed,
            ]
        )
        return read(folder)

    a, b, c = run(tmp_path / "a", "0"), run(tmp_path / "b", "0"), run(tmp_path / "c", "1")
    assert all(np.array_equal(a[n], b[n]) for n in a)
    assert not all(np.array_equal(a[n], c[n]) for n in a)


def test_bad_inputs_give_one_line_and_leave_no_output(tmp_path, noise_dir, tiny_unet_file):
    corrupt = tmp_path / "UNet.pt"
    corrupt.write_bytes(b"\x00" * 100)
    cases = [
        (tmp_path / "no_noises", tiny_unet_file, "noise folder not found"),
        (noise_dir, tmp_path / "missing.pt", "UNet checkpoint not found"),
        (noise_dir, corrupt, "is not a readable torch file"),
    ]
    for noises, unet, message in cases:
        out = tmp_path / "out"
        result = hw2_2(noises, out, unet)
        assert result.returncode == 1
        assert result.stderr.strip().startswith("error:") and message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert not out.exists()


def test_failure_keeps_an_existing_folder_as_it_was(tmp_path, noise_dir):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = hw2_2(noise_dir, out, tmp_path / "missing.pt")
    assert result.returncode == 1
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_usage_error_without_arguments():
    result = hw2_2()
    assert result.returncode == 2 and "usage: hw2_2.sh" in result.stderr


@pytest.mark.parametrize("flag", [["--steps", "0"], ["--batch-size", "0"], ["--eta", "-1"]])
def test_rejects_impossible_options(tmp_path, noise_dir, tiny_unet_file, flag):
    with pytest.raises(SystemExit) as exit_info:
        main([str(noise_dir), str(tmp_path / "out"), str(tiny_unet_file), *flag])
    assert exit_info.value.code == 2
