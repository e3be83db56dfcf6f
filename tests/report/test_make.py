"""build --make: which commands run with what is present (planned, not run: they take minutes)."""
import argparse

from report.make import plan


def args_for(tmp_path, **kw):
    values = dict(data=str(tmp_path / "hw2_data"), unet=None, sd_ckpt=None, clip=None,
                  evaluator=None)
    values.update(kw)
    return argparse.Namespace(**values)


def test_without_course_files_only_p1_lab6_grids_and_noise_norms_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./UNet.pt, ./sd-v1-4.ckpt, ./checkpoint.pth here
    steps = plan(args_for(tmp_path))
    ran = [(part, command) for part, command, reason in steps if reason is None]
    assert [part for part, _ in ran].count("p1") == 3
    assert any("p2.interpolation_norms --json" in c and "[" not in c for _, c in ran)
    assert ("lab6", "python3 -m p1.iclevr report/results/lab6/ddpm --guidance 4"
            " --classifier-guidance 20 --guide-classifier p1/iclevr/guide_iclevr.pt") in ran
    skipped = {command: reason for _, command, reason in steps if reason}
    assert any("p2.figures eta-grid" in c and "UNet.pt" in r for c, r in skipped.items())
    assert any("p3.zeroshot" in c and "--clip" in r for c, r in skipped.items())
    assert any("--guidance 2" in c and "evaluator" in r for c, r in skipped.items())


def test_with_course_files_their_commands_run_with_the_given_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    noise = tmp_path / "hw2_data" / "face" / "noise"
    noise.mkdir(parents=True)
    (noise / "00.pt").write_text("")
    (tmp_path / "hw2_data" / "face" / "GT").mkdir()
    (tmp_path / "my_unet.pt").write_text("")
    (tmp_path / "eval.pth").write_text("")
    steps = plan(args_for(tmp_path, unet=str(tmp_path / "my_unet.pt"),
                          evaluator=str(tmp_path / "eval.pth")))
    ran = [command for _, command, reason in steps if reason is None]
    assert any("p2.figures eta-grid" in c and "my_unet.pt" in c for c in ran)
    assert any(c.startswith("bash hw2_2.sh") and "p2.mse" in c for c in ran)
    assert any(f"{noise}" in c and "interpolation_norms" in c for c in ran)
    assert sum("--evaluator " + str(tmp_path / "eval.pth") in c for c in ran) == 7


def test_make_runs_reports_failures_and_skips(monkeypatch, capsys):
    import report.make as make_module

    monkeypatch.setattr(make_module, "plan", lambda args: [
        ("p1", "true", None), ("p2", "exit 3", None), ("p3", "echo never", "needs X")])
    make_module.make(argparse.Namespace())
    out = capsys.readouterr().out
    assert "make [1/3] p1: true" in out and "make [1/3] p1: done" in out
    assert "make [2/3] p2: failed (exit 3); its items stay pending" in out
    assert "make [3/3] p3: skipped (needs X): echo never" in out
    assert "\nnever\n" not in out  # the skipped command did not run
    assert out.splitlines()[-1] == "make: 1 ran, 1 failed, 1 skipped"
