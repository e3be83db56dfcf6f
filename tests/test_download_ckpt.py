"""hw2_download_ckpt.sh against a file server on the loopback interface."""

import functools
import hashlib
import http.server
import os
import subprocess
import threading
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "hw2_download_ckpt.sh"


@pytest.fixture
def server(tmp_path):
    """Serve tmp_path/files on 127.0.0.1; yields the base URL."""
    files = tmp_path / "files"
    files.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(files))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", files
    httpd.shutdown()


def run(manifest_lines, tmp_path):
    manifest = tmp_path / "manifest.tsv"
    manifest.write_text("".join(line + "\n" for line in manifest_lines))
    env = dict(os.environ, HW2_CKPT_MANIFEST=str(manifest), no_proxy="*")
    return subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_downloads_verifies_and_then_skips(server, tmp_path):
    url, files = server
    (files / "model.pt").write_bytes(b"weights")
    dest = tmp_path / "ckpt" / "model.pt"
    line = f"{url}/model.pt\t{dest}\t{sha(b'weights')}"
    result = run(["# comment", "", line], tmp_path)
    assert result.returncode == 0, result.stderr
    assert dest.read_bytes() == b"weights" and "1 checkpoint(s) ready" in result.stdout

    (files / "model.pt").unlink()  # a second run must not need the server
    result = run([line], tmp_path)
    assert result.returncode == 0 and "present:" in result.stdout


def test_sha_mismatch_fails_and_leaves_nothing(server, tmp_path):
    url, files = server
    (files / "model.pt").write_bytes(b"tampered")
    dest = tmp_path / "model.pt"
    result = run([f"{url}/model.pt\t{dest}\t{sha(b'weights')}"], tmp_path)
    assert result.returncode == 1 and result.stderr.startswith("error: sha256 mismatch")
    assert not dest.exists() and not Path(f"{dest}.part").exists()


def test_failed_download_and_malformed_lines(server, tmp_path):
    url, _ = server
    result = run([f"{url}/absent.pt\t{tmp_path / 'x.pt'}\t{sha(b'')}"], tmp_path)
    assert result.returncode == 1 and "download failed" in result.stderr
    result = run([f"{url}/x.pt\t{tmp_path / 'x.pt'}\tnot-a-sha"], tmp_path)
    assert result.returncode == 1 and "malformed line" in result.stderr


def test_empty_manifest_and_missing_manifest(tmp_path):
    assert run(["# nothing yet"], tmp_path).stdout.strip() == "0 checkpoint(s) ready"
    env = dict(os.environ, HW2_CKPT_MANIFEST=str(tmp_path / "none.tsv"))
    result = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env)
    assert result.returncode == 1 and "manifest not found" in result.stderr


def test_the_shipped_manifest_is_valid():
    result = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
