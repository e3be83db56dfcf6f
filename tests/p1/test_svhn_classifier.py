import pytest
import torch

from p1.errors import UserError
from p1.score import load_svhn_classifier
from p1.score import main as score_main
from p1.svhn_classifier import build_classifier, main, random_shift


def test_train_save_and_score(tmp_path, digit_layout, capsys):
    out = str(tmp_path / "svhn.pt")
    main(["--data", digit_layout, "--out", out, "--epochs", "1", "--batch-size", "4",
          "--device", "cpu"])
    assert "held-out accuracy" in capsys.readouterr().out
    state = torch.load(out)
    assert state["arch"] == "p1-svhn-cnn" and 0.0 <= state["heldout_accuracy"] <= 1.0
    load_svhn_classifier(out, torch.device("cpu"))
    lenet = tmp_path / "lenet.pth"
    from p1.score import MnistmClassifier
    torch.save({"state_dict": MnistmClassifier().state_dict()}, lenet)
    score_main(["--data", digit_layout, "--mnistm-classifier", str(lenet),
                "--svhn-classifier", out, "--device", "cpu"])
    output = capsys.readouterr().out
    assert "correct/total = " in output and "SVHN acc" in output


def test_shapes_and_errors(tmp_path, digit_layout):
    assert build_classifier()(torch.zeros(2, 3, 28, 28)).shape == (2, 10)
    shifted = random_shift(torch.arange(2 * 3 * 28 * 28.0).reshape(2, 3, 28, 28),
                           torch.Generator().manual_seed(0))
    assert shifted.shape == (2, 3, 28, 28)
    with pytest.raises(UserError, match="--epochs"):
        main(["--data", digit_layout, "--epochs", "0"])
    torch.save({"state_dict": {}}, tmp_path / "x.pt")
    with pytest.raises(UserError, match="not a p1.svhn_classifier"):
        load_svhn_classifier(str(tmp_path / "x.pt"), torch.device("cpu"))
