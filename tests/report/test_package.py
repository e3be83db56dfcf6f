"""python3 -m report package-lab6: the zip's name and contents, the weights file."""
import os
import zipfile

import pytest

from report.__main__ import main
from report.errors import UserError, run_cli
from report.package import WEIGHTS, code_files, package
from tests.report.fixtures import make_results


def test_zip_and_weights(tmp_path, capsys):
    results = make_results(str(tmp_path / "results"))
    out = tmp_path / "submit"
    out.mkdir()
    run_cli(main, ["package-lab6", "--student-id", "313551000", "--name", "WangXiaoMing",
                   "--results", results, "--output-dir", str(tmp_path), "--out", str(out)])
    assert sorted(os.listdir(out)) == ["DL_LAB6_313551000_WangXiaoMing.zip",
                                       "DL_lab6_313551000_WangXiaoMing.pth"]
    with open(out / "DL_lab6_313551000_WangXiaoMing.pth", "rb") as a, open(WEIGHTS, "rb") as b:
        assert a.read() == b.read()
    with zipfile.ZipFile(out / "DL_LAB6_313551000_WangXiaoMing.zip") as archive:
        names = archive.namelist()
        assert archive.read("DL_LAB6_313551000_WangXiaoMing.pdf").startswith(b"%PDF")
    assert "code/p1/iclevr/generate.py" in names and "code/p1/iclevr/test.json" in names
    assert "code/requirements.txt" in names and "code/README.md" in names
    weights = [n for n in names if n.endswith((".pt", ".pth", ".pyc", ".ckpt"))]
    assert weights == ["code/p1/iclevr/guide_iclevr.pt"]
    assert not [n for n in names if any(part in n.split("/") for part in
                                        ("hw2_data", "iclevr_data", "runs", "__pycache__",
                                         ".venv", ".venv38", "p2", "p3"))]
    assert "wrote" in capsys.readouterr().out.splitlines()[-1]


def test_code_files_skip_data_envs_and_runs(tmp_path):
    for path in ("p1/a.py", "p1/w.pt", "p1/iclevr/guide_iclevr.pt", "p1/runs/x.py",
                 "p1/__pycache__/a.pyc", "p1/.venv/x.py",
                 "tests/p1/test_a.py", "README.md", "hw2_data/x.png", "p2/b.py"):
        os.makedirs(os.path.dirname(str(tmp_path / path)) or str(tmp_path), exist_ok=True)
        (tmp_path / path).write_text("x")
    assert code_files(str(tmp_path)) == ["README.md", "p1/a.py", "p1/iclevr/guide_iclevr.pt",
                                         "tests/p1/test_a.py"]


def test_bad_inputs(tmp_path):
    pdf = tmp_path / "r.pdf"
    pdf.write_bytes(b"%PDF-1.7")
    with pytest.raises(UserError, match="cannot be part of a file name"):
        package("a b", "x", str(pdf), str(tmp_path))
    with pytest.raises(UserError, match="missing or read-only"):
        package("r1", "x", str(pdf), str(tmp_path / "nowhere"))
    with pytest.raises(UserError, match="run python3 -m report build first"):
        package("r1", "x", str(tmp_path / "none.pdf"), str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["r.pdf"]  # nothing half-written
