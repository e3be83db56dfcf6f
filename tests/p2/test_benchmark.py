from p2.benchmark import main


def test_benchmark_prints_seconds_and_overhead(tiny_unet_file, capsys):
    main(
        [
            "--unet",
            str(tiny_unet_file),
            "--size",
            "32",
            "--steps",
            "2",
            "--batch-size",
            "2",
            "--device",
            "cpu",
        ]
    )
    out = capsys.readouterr().out
    assert "seconds per image:" in out and "sampler overhead:" in out
