"""Results as JSON beside a tool's printed output (read by the report: ``python3 -m report``).

``check_writable(path)`` runs before the work, so a bad ``--json`` path fails in seconds;
``write_json(path, data)`` writes to a temporary file in the same folder and renames it into
place, so a reader never sees half a file.
"""
import json
import os
import tempfile

from p3.errors import UserError


def check_writable(path: str) -> None:
    """UserError unless a file can be created at ``path`` (its folder is made if needed)."""
    if os.path.isdir(path):
        raise UserError(f"--json {path} is a folder; give a file name")
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=".probe-", dir=folder)
        os.close(handle)
        os.remove(probe)
    except OSError as err:
        raise UserError(f"cannot write --json {path}: {err.strerror or err}") from None


def write_json(path: str, data: dict) -> None:
    """Write ``data`` to ``path`` atomically (temporary file + rename)."""
    check_writable(path)
    folder = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(prefix=".json-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(handle, "w") as stream:
            json.dump(data, stream, indent=2)
            stream.write("\n")
        os.replace(temporary, path)
    except OSError as err:
        raise UserError(f"cannot write --json {path}: {err.strerror or err}") from None
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
