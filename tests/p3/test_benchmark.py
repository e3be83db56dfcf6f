from p3 import benchmark


def test_tiny_benchmark_prints_a_row_per_batch_and_step_count(capsys):
    benchmark.main(["--config", "tiny", "--device", "cpu", "--batch-sizes", "1,2",
                    "--steps", "1,2"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| batch | steps | s/batch | s/image")
    assert [row.split(" | ")[:2] for row in rows[1:]] == [
        ["| 1", "1"], ["| 1", "2"], ["| 2", "1"], ["| 2", "2"]
    ]
