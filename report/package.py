"""The Lab 6 submission: ``DL_LAB6_<ID>_<Name>.zip`` (report PDF + source code) and the
weights as ``DL_lab6_<ID>_<Name>.pth`` (the shipped ``p1/iclevr/ddpm_iclevr.pt``).

The code is what Lab 6 runs: the ``p1`` package (the DDPM core and ``p1/iclevr``), its tests,
the requirement files, ``pyproject.toml``, ``scripts/setup_env.sh`` and the README, plus the
guide classifier ``p1/iclevr/guide_iclevr.pt`` (5.9 MB) that the guided results are sampled
with. No data, no other weights (the DDPM travels as the .pth), no virtual environments, run
folders or caches. Entries carry a fixed date, so the same tree gives the same zip.
"""
import os
import tempfile
import zipfile
from typing import List, Tuple

from report.build import REPO, check_file_part, write_atomic
from report.errors import UserError

WEIGHTS = os.path.join(REPO, "p1", "iclevr", "ddpm_iclevr.pt")
CODE_FILES = ("README.md", "pyproject.toml", "requirements.txt", "requirements-dev.txt",
              "scripts/setup_env.sh", "p1/iclevr/guide_iclevr.pt")
CODE_TREES = ("p1", "tests/p1")
SKIP_DIRS = {"__pycache__", ".pytest_cache", ".ruff_cache", "runs", "hw2_data", "iclevr_data",
             ".git"}
SKIP_SUFFIXES = (".pt", ".pth", ".ckpt", ".pyc", ".zip", ".pdf")
FIXED_DATE = (2024, 1, 1, 0, 0, 0)


def submission_names(student_id: str, name: str) -> Tuple[str, str, str]:
    """(zip, pdf inside it, weights) file names."""
    return (f"DL_LAB6_{student_id}_{name}.zip", f"DL_LAB6_{student_id}_{name}.pdf",
            f"DL_lab6_{student_id}_{name}.pth")


def code_files(repo: str = REPO) -> List[str]:
    """Repository-relative paths of the source files that go into the zip, sorted."""
    found = [path for path in CODE_FILES if os.path.isfile(os.path.join(repo, path))]
    for tree in CODE_TREES:
        for folder, dirs, files in os.walk(os.path.join(repo, tree)):
            dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith(".venv"))
            for name in files:
                if not name.endswith(SKIP_SUFFIXES) and not name.startswith("."):
                    found.append(os.path.relpath(os.path.join(folder, name), repo))
    return sorted(found)


def package(student_id: str, name: str, pdf: str, out_dir: str, log=print) -> Tuple[str, str]:
    """Write the zip and the weights into ``out_dir``; returns their paths."""
    student_id = check_file_part(student_id, "student ID")
    name = check_file_part(name, "name")
    zip_name, pdf_name, weights_name = submission_names(student_id, name)
    if not os.path.isdir(out_dir) or not os.access(out_dir, os.W_OK):
        raise UserError(f"cannot write into {out_dir}: missing or read-only folder")
    if not os.path.isfile(WEIGHTS):
        raise UserError(f"no Lab 6 weights at {WEIGHTS}")
    if not os.path.isfile(pdf):
        raise UserError(f"no report at {pdf}: run python3 -m report build first")
    files = code_files()
    zip_path = os.path.join(out_dir, zip_name)
    handle, temporary = tempfile.mkstemp(prefix=".lab6-", suffix=".tmp", dir=out_dir)
    os.close(handle)
    try:
        with zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED) as archive:
            entries = [(pdf, pdf_name)] + [(os.path.join(REPO, f), f"code/{f}") for f in files]
            for source, arcname in entries:
                info = zipfile.ZipInfo(arcname, FIXED_DATE)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                with open(source, "rb") as stream:
                    archive.writestr(info, stream.read())
        os.replace(temporary, zip_path)
    except OSError as err:
        raise UserError(f"cannot write {zip_path}: {err.strerror}") from None
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    weights_path = os.path.join(out_dir, weights_name)
    with open(WEIGHTS, "rb") as stream:
        write_atomic(weights_path, stream.read())
    log(f"wrote {os.path.relpath(zip_path)} ({len(files)} source files + {pdf_name}, "
        f"{os.path.getsize(zip_path) / 1e6:.1f} MB) and {os.path.relpath(weights_path)} "
        f"({os.path.getsize(weights_path) / 1e6:.1f} MB)")
    return zip_path, weights_path
