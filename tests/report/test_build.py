"""python3 -m report build: fixture results in, two PDFs out; numbers come from the JSON."""
import json
import os

import pytest
from pypdf import PdfReader

from report.__main__ import main
from report.build import build
from report.errors import UserError, run_cli
from report.items import ITEMS
from tests.report.fixtures import make_results, write_json


def pdf_text(path):
    return " ".join(" ".join((page.extract_text() or "").split())
                    for page in PdfReader(str(path)).pages)


def run(tmp_path, results, *extra):
    out = tmp_path / "pdf"
    out.mkdir(exist_ok=True)
    run_cli(main, ["build", "--results", str(results), "--output-dir", str(out), *extra])
    return out


@pytest.fixture
def results(tmp_path):
    return make_results(str(tmp_path / "results"))


def test_complete_build_has_no_pending_items(tmp_path, results, capsys):
    out = run(tmp_path, results, "--student-id", "r13900001", "--name", "Lin", "--strict")
    hw2, lab6 = out / "hw2_r13900001.pdf", out / "DL_LAB6_r13900001_Lin.pdf"
    assert hw2.is_file() and lab6.is_file()
    printed = capsys.readouterr().out
    assert "0 pending item(s)" in printed.splitlines()[-1]
    text, lab6_text = pdf_text(hw2), pdf_text(lab6)
    assert "r13900001" in text and "Lin" in lab6_text and "Pending" not in text + lab6_text
    for number in ("0.9123", "456 / 500", "0.9375", "56.48", "5.750", "90.01"):
        assert number in text, number
    assert "0.8472" in lab6_text and "61 / 72" in lab6_text  # 0.8472 x 72 = 61 hits
    assert "test: accuracy 0.8472 (32 images, 36.5 s)" in lab6_text  # the terminal block
    assert "0.6111" in lab6_text and "640,000" in lab6_text  # the GAN comparison table
    assert "1.00 h" in lab6_text and "not recorded" in lab6_text


def test_a_changed_number_changes_the_pdf(tmp_path, results):
    path = os.path.join(results, "results", "p1", "score.json")
    data = json.load(open(path))
    data["datasets"]["mnistm"]["accuracy"] = 0.4321
    write_json(path, data)
    lab6 = os.path.join(results, "results", "lab6", "ddpm", "accuracy.json")
    data = json.load(open(lab6))
    data["new_test"]["accuracy"] = 0.7857
    write_json(lab6, data)
    out = run(tmp_path, results)
    text = pdf_text(out / "hw2_STUDENTID.pdf")
    assert "0.4321" in text and "0.9123" not in text
    assert "0.7857" in pdf_text(out / "DL_LAB6_STUDENTID_NAME.pdf")


def test_missing_results_become_pending_boxes_and_a_list(tmp_path, capsys):
    results = make_results(str(tmp_path / "results"), skip=("p1.score", "p2.eta_grid",
                                                            "lab6.accuracy"))
    out = run(tmp_path, results)
    printed = capsys.readouterr().out
    assert "pending (3; each is a framed box in its PDF):" in printed
    assert "results/p1/score.json" in printed and "p2_eta_grid.png" in printed
    assert printed.splitlines()[-1].endswith("3 pending item(s) (--strict makes them errors)")
    text = pdf_text(out / "hw2_STUDENTID.pdf")
    assert "Pending: P1 accuracies of the 1000 images of hw2_1.sh" in text
    assert "python3 -m p1.score" in text and "Pending: P2 eta grid" in text
    lab6 = pdf_text(out / "DL_LAB6_STUDENTID_NAME.pdf")
    assert "Pending: Lab 6 accuracies" in lab6 and "--evaluator checkpoint.pth" in lab6


def test_nothing_present_still_builds(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    run(tmp_path, tmp_path / "empty")
    assert f"{len(ITEMS)} pending item(s)" in capsys.readouterr().out


def test_strict_makes_pending_an_error_and_writes_nothing(tmp_path, capsys):
    results = make_results(str(tmp_path / "results"), skip=("p3.multi",))
    with pytest.raises(SystemExit) as exit_info:
        run(tmp_path, results, "--strict")
    assert exit_info.value.code == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: --strict: 1 pending")
    assert "p3_multi.png" in error[0] and "python3 -m p3.generate_prompt" in error[0]
    assert os.listdir(tmp_path / "pdf") == []


@pytest.mark.parametrize("student_id, name", [("a/b", "x"), ("r1", "two words"), ("", "x"),
                                              ("r1", "..."), ("r1", "-x")])
def test_ids_and_names_that_cannot_be_file_names(tmp_path, results, student_id, name):
    with pytest.raises(UserError, match="cannot be part of a file name"):
        build(student_id, name, report_dir=results, output_dir=str(tmp_path))


def test_unicode_names_are_fine(tmp_path, results):
    lines = []
    build("r13900001", "林小明", report_dir=results, output_dir=str(tmp_path), log=lines.append)
    assert (tmp_path / "DL_LAB6_r13900001_林小明.pdf").is_file()
    assert lines[0].startswith("note: the ID or name has letters beyond Latin")


def error_of(tmp_path, results, capsys, *extra):
    with pytest.raises(SystemExit) as exit_info:
        run(tmp_path, results, *extra)
    assert exit_info.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert os.listdir(tmp_path / "pdf") == []  # no half-written PDF
    return lines[0]


def test_malformed_json_is_named(tmp_path, results, capsys):
    path = os.path.join(results, "results", "p2", "mse.json")
    with open(path, "w") as handle:
        handle.write("{not json")
    assert f"{path} is not valid JSON" in error_of(tmp_path, results, capsys)
    write_json(path, [1, 2])
    assert "must hold a JSON object" in error_of(tmp_path, results, capsys)
    write_json(path, {"mean": 1.0})
    assert "lacks the key 'per_image'" in error_of(tmp_path, results, capsys)


def test_figure_that_does_not_decode(tmp_path, results, capsys):
    path = os.path.join(results, "figures", "grid_svhn.png")
    with open(path, "wb") as handle:
        handle.write(b"\x89PNG\r\n\x1a\nbroken")
    message = error_of(tmp_path, results, capsys)
    assert "grid_svhn.png does not decode" in message


def test_unwritable_output(tmp_path, results, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UserError, match="cannot write"):
        build("r1", "x", report_dir=results, output_dir=str(blocker / "sub"))
    (tmp_path / "pdf").mkdir()
    (tmp_path / "pdf" / "hw2_STUDENTID.pdf").mkdir()  # a folder where the PDF goes
    with pytest.raises(SystemExit):
        run(tmp_path, results)
    assert "it is a folder" in capsys.readouterr().err


def test_a_typst_error_is_one_line_and_leaves_no_pdf(tmp_path, results, capsys):
    path = os.path.join(results, "results", "lab6", "ddpm", "accuracy.json")
    write_json(path, {"test": {}, "new_test": {}})  # keys the source reads are missing
    message = error_of(tmp_path, results, capsys)
    assert message.startswith("error: typst could not compile lab6.typ")


def test_cross_check_shows_in_the_terminal_block_and_the_table(tmp_path, results):
    path = os.path.join(results, "results", "lab6", "ddpm", "accuracy.json")
    data = json.load(open(path))
    data["test"]["cross_check"] = 0.8056
    write_json(path, data)
    text = pdf_text(run(tmp_path, results) / "DL_LAB6_STUDENTID_NAME.pdf")
    assert "test: accuracy 0.8472 (32 images, 36.5 s), cross-check 0.8056" in text
    assert "judge B" in text
