import json
import math

import pytest
import torch

from p2.errors import UserError
from p2.interpolation_norms import main, measure


def test_linear_mix_shrinks_gaussian_noise_slerp_keeps_it(tmp_path, capsys):
    target = tmp_path / "norms.json"
    main(["--seed", "3", "--json", str(target)])
    data = json.loads(target.read_text())
    assert data["values_per_noise"] == 3 * 256 * 256 and len(data["rows"]) == 11
    middle = data["rows"][5]
    assert middle["alpha"] == 0.5
    assert abs(middle["linear_std"] - math.sqrt(0.5)) < 0.01
    assert abs(middle["slerp_norm_over_sqrt_d"] - 1) < 0.01
    assert abs(data["angle_degrees"] - 90) < 1
    assert "| 0.5 |" in capsys.readouterr().out


def test_endpoints_and_noise_folder(tmp_path):
    z0, z1 = torch.randn(1, 3, 32, 32), torch.randn(1, 3, 32, 32)
    rows = measure(z0.double(), z1.double(), [0.0, 1.0])["rows"]
    assert abs(rows[0]["linear_norm_over_sqrt_d"] - rows[0]["slerp_norm_over_sqrt_d"]) < 1e-9
    folder = tmp_path / "noise"
    folder.mkdir()
    torch.save(z0, folder / "00.pt")
    torch.save(z1, folder / "01.pt")
    main([str(folder)])
    with pytest.raises(UserError, match="no 02.pt"):
        main([str(folder), "--pair", "00", "02"])
