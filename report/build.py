"""Collect the results, hand them to Typst, write the two PDFs atomically.

The build copies the Typst sources (``report/typ/``) and every figure into a fresh staging
folder, writes ``data.json`` there (the results of ``items.ITEMS``, read from their JSON files,
plus the configuration stored in the shipped checkpoints) and compiles with that folder as
Typst's root, so the sources read ``json("data.json")`` and nothing else. The PDF is written
to a temporary file beside its destination and renamed into place.
"""
import functools
import json
import os
import re
import shutil
import tempfile
import time
from typing import Dict, List, Optional, Tuple

from report.errors import UserError
from report.items import ITEMS, LAB6_ABLATIONS, Item

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
TYP_DIR = os.path.join(HERE, "typ")
CHECKPOINTS = {"p1": "p1/ddpm_digits.pt", "lab6": "p1/iclevr/ddpm_iclevr.pt"}
SAFE_NAME = re.compile(r"^[^\W_](?:[\w.\-]*[^\W_])?$")
PLACEHOLDER_ID = "STUDENTID"
PLACEHOLDER_NAME = "NAME"


def check_file_part(value: str, what: str) -> str:
    """``value`` if it can be part of a file name (letters, digits, '.', '-', '_'; any
    script), else a UserError."""
    if not SAFE_NAME.match(value) or ".." in value or len(value) > 80:
        raise UserError(f"{what} {value!r} cannot be part of a file name: use letters, digits, "
                        "'-', '_' or '.' (no spaces or slashes), starting and ending with a "
                        "letter or digit")
    return value


def output_paths(student_id: str, name: str, folder: Optional[str] = None) -> Tuple[str, str]:
    """(hw2 PDF at the repository root, Lab 6 PDF under report/), or both in ``folder``."""
    return (os.path.join(folder or REPO, f"hw2_{student_id}.pdf"),
            os.path.join(folder or HERE, f"DL_LAB6_{student_id}_{name}.pdf"))


def read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path} is not valid JSON: {err}") from None
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} must hold a JSON object")
    return data


def check_png(path: str) -> Tuple[int, int]:
    """(width, height) of an image file that decodes, else a UserError naming it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            if image.format != "PNG":
                raise UserError(f"{path} is a {image.format} file, not a PNG")
            return image.size
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as err:
        raise UserError(f"figure {path} does not decode as an image: {err}") from None


def require(data: dict, path: str, *keys: str) -> None:
    missing = [key for key in keys if key not in data]
    if missing:
        raise UserError(f"{path} lacks the key {missing[0]!r} (is it the right tool's output?)")


# Keys each results JSON must hold for the report to use it, by item key prefix.
REQUIRED_KEYS = {
    "p1.score": ("datasets", "mean_accuracy"),
    "p1.quality": ("rows", "per_class", "checkpoint_step"),
    "p2.mse": ("per_image", "mean"),
    "p2.norms": ("rows", "source"),
    "p3.zeroshot": ("accuracy", "correct", "total", "successes", "failures"),
    "p3.score": ("prompts", "passed", "cases"),
    "lab6.accuracy": ("test", "new_test"),
    "lab6.ablation": ("test", "new_test"),
}


def collect(report_dir: str) -> Tuple[Dict[str, dict], List[Item]]:
    """{item key: entry} and the pending items; UserError for a malformed file."""
    entries, pending = {}, []
    for item in ITEMS:
        path = os.path.join(report_dir, item.path)
        entry = {"title": item.title, "command": item.command, "needs": item.needs,
                 "report": item.report,
                 "path": os.path.relpath(path, REPO) if path.startswith(REPO) else path}
        if not os.path.isfile(path):
            entry["status"] = "pending"
            pending.append(item)
        elif item.kind == "json":
            data = read_json(path)
            prefix = ".".join(item.key.split(".")[:2])
            require(data, path, *REQUIRED_KEYS.get(item.key, REQUIRED_KEYS.get(prefix, ())))
            entry.update(status="ok", data=data)
        else:
            width, height = check_png(path)
            entry.update(status="ok", file=f"fig/{item.key}.png", width=width, height=height,
                         source=path)
        entries[item.key] = entry
    return entries, pending


@functools.lru_cache(maxsize=1)
def checkpoint_facts() -> Dict[str, dict]:
    """Model and schedule configuration, training step and parameter count stored in the
    shipped checkpoints (what the training run wrote), when torch can read them."""
    facts = {}
    try:
        import torch
    except ImportError:
        return facts
    for key, relative in CHECKPOINTS.items():
        path = os.path.join(REPO, relative)
        try:
            state = torch.load(path, map_location="cpu")
            facts[key] = {
                "path": relative, "step": state.get("step"),
                "cond_layout": state.get("cond_layout"),
                "model": {k: list(v) if isinstance(v, tuple) else v
                          for k, v in state["model_config"].items()},
                "schedule": state["schedule_config"],
                "parameters": sum(v.numel() for v in state["ema"].values()),
                "megabytes": round(os.path.getsize(path) / 1e6, 1)}
        except Exception:  # missing or foreign file: the report says "not available"
            continue
    try:  # the samplers' defaults, as the commands use them
        from p1.generate import DEFAULTS as P1_DEFAULTS
        from p1.iclevr.generate import DEFAULTS as LAB6_DEFAULTS

        facts["defaults"] = {"p1": dict(P1_DEFAULTS), "lab6": dict(LAB6_DEFAULTS)}
    except Exception:  # an import problem must not stop the report
        pass
    return facts


def stage(staging: str, entries: Dict[str, dict], meta: dict) -> None:
    """Sources, figures and data.json into the staging folder."""
    for name in os.listdir(TYP_DIR):
        if name.endswith((".typ", ".bib")):
            shutil.copyfile(os.path.join(TYP_DIR, name), os.path.join(staging, name))
    os.makedirs(os.path.join(staging, "fig"))
    public = {}
    for key, entry in entries.items():
        entry = dict(entry)
        source = entry.pop("source", None)
        if source:
            shutil.copyfile(source, os.path.join(staging, entry["file"]))
        public[key] = entry
    ablations = [{"key": f"lab6.ablation.{name}", "what": what} for name, _, what in
                 LAB6_ABLATIONS]
    with open(os.path.join(staging, "data.json"), "w", encoding="utf-8") as handle:
        json.dump({"meta": meta, "items": public, "item_order": [i.key for i in ITEMS],
                   "ablations": ablations,
                   "checkpoints": checkpoint_facts()}, handle, indent=1)


def compile_pdf(staging: str, source: str) -> bytes:
    """The PDF of ``staging/source``; a Typst error becomes one line."""
    import typst

    try:
        pdf, warnings = typst.compile_with_warnings(os.path.join(staging, source), root=staging)
    except typst.TypstError as err:
        message = " ".join(str(err).split())
        where = re.search(r"\u250c\u2500 (\S+)", getattr(err, "diagnostic", "") or "")
        raise UserError(f"typst could not compile {source}: {message}"
                        + (f" at report/typ/{os.path.basename(where.group(1))}" if where
                           else "")) from None
    for warning in warnings:  # e.g. a missing font; the PDF is still complete
        print(f"typst warning ({source}): {' '.join(str(warning).split())}")
    return pdf


def page_count(pdf: bytes) -> int:
    return len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", pdf))


def write_atomic(destination: str, payload: bytes) -> None:
    folder = os.path.dirname(os.path.abspath(destination)) or "."
    if not os.path.isdir(folder):
        raise UserError(f"cannot write {destination}: folder {folder} does not exist")
    try:
        handle, temporary = tempfile.mkstemp(prefix=".report-", suffix=".tmp", dir=folder)
    except OSError as err:
        raise UserError(f"cannot write {destination}: {err.strerror}") from None
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(payload)
        os.replace(temporary, destination)
    except OSError as err:
        raise UserError(f"cannot write {destination}: {err.strerror}") from None
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def check_writable(destination: str) -> None:
    """Fail before compiling when ``destination`` cannot be created."""
    if os.path.isdir(destination):
        raise UserError(f"cannot write {destination}: it is a folder")
    folder = os.path.dirname(os.path.abspath(destination))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise UserError(f"cannot write {destination}: folder {folder} is missing or read-only")


def build(student_id: str, name: str, report_dir: str = HERE, strict: bool = False,
          output_dir: Optional[str] = None, log=print) -> List[Item]:
    """Both PDFs; returns the pending items (UserError under ``strict`` when there are any).
    ``output_dir`` puts both PDFs there instead of their places in the repository."""
    student_id = check_file_part(student_id, "student ID")
    name = check_file_part(name, "name")
    hw2_pdf, lab6_pdf = output_paths(student_id, name, output_dir)
    for destination in (hw2_pdf, lab6_pdf):
        check_writable(destination)
    if any(ord(ch) > 0x24F for ch in student_id + name):
        log("note: the ID or name has letters beyond Latin; the PDFs show them only where a font "
            "with those glyphs is installed (e.g. Debian's fonts-noto-cjk), else as empty boxes")
    log(f"collecting results from {os.path.relpath(report_dir)}/")
    entries, pending = collect(report_dir)
    for report in ("hw2", "lab6"):
        keys = [item for item in ITEMS if item.report == report]
        waiting = [item for item in pending if item.report == report]
        log(f"  {report}: {len(keys) - len(waiting)} of {len(keys)} results present")
    if strict and pending:
        raise UserError(f"--strict: {len(pending)} pending item(s), first: {pending[0].title} "
                        f"({pending[0].path}); make it with: {pending[0].command}")
    meta = {"student_id": student_id, "name": name,
            "placeholder": student_id == PLACEHOLDER_ID or name == PLACEHOLDER_NAME}
    staging = tempfile.mkdtemp(prefix="report-build-")
    try:
        stage(staging, entries, meta)
        pdfs = []
        for source, destination in (("hw2.typ", hw2_pdf), ("lab6.typ", lab6_pdf)):
            start = time.time()
            pdfs.append((destination, compile_pdf(staging, source)))
            log(f"typst {source}: {page_count(pdfs[-1][1])} pages in {time.time() - start:.1f} s")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for destination, pdf in pdfs:  # both compiled: only now is anything replaced
        write_atomic(destination, pdf)
        log(f"wrote {os.path.relpath(destination)}")
    return pending
