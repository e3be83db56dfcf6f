"""The READMEs: every relative link resolves, every command they name exists.

Text only (no torch import): links are read from the Markdown outside code, commands from
everywhere in it; a module counts when ``importlib.util.find_spec`` finds it and it can run
(a package with ``__main__``, or a module with an ``if __name__ == "__main__"`` block).
"""
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP_DIRS = {".git", "runs", "hw2_data", "iclevr_data", "outputs", "node_modules", "__pycache__"}
# Named in the top README, written on another branch: checked once the package is there.
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
MODULE = re.compile(r"\b(?:python3?|torchrun\b[^\n`]*?)\s+-m\s+([A-Za-z_][\w.]*)")
SCRIPT = re.compile(r"\bbash\s+((?:[\w.-]+/)*[\w.-]+(?:\.sh|/run))\b")


def markdown_files():
    """Tracked and untracked-but-not-ignored *.md files (every *.md outside caches without git)."""
    try:
        out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "*.md"], cwd=ROOT,
                             capture_output=True, text=True, check=True, timeout=30).stdout
        files = [ROOT / line for line in out.splitlines() if line]
    except (OSError, subprocess.SubprocessError):
        files = [p for p in ROOT.rglob("*.md")
                 if not ({part for part in p.relative_to(ROOT).parts[:-1]} & SKIP_DIRS
                         or any(part.startswith(".") for part in p.relative_to(ROOT).parts))]
    return sorted(p for p in files if p.is_file())


MARKDOWN = markdown_files()


def relative_links(text):
    prose = INLINE_CODE.sub("", FENCE.sub("", text))
    for target in LINK.findall(prose):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
            continue  # http(s)://, mailto: ... and anchors within the page
        yield target.split("#", 1)[0].split("?", 1)[0]


def test_there_is_a_readme_per_problem():
    names = {p.relative_to(ROOT).as_posix() for p in MARKDOWN}
    assert {"README.md", "p1/README.md", "p1/iclevr/README.md", "p2/README.md",
            "p3/README.md"} <= names


@pytest.mark.parametrize("md", MARKDOWN, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(md):
    missing = [t for t in relative_links(md.read_text(encoding="utf-8"))
               if not (md.parent / t).exists()]
    assert missing == [], f"{md.relative_to(ROOT)}: broken links {missing}"


def test_link_parser_sees_links_and_images_but_not_code():
    text = "[a](x.md) ![b](img/y.png \"t\") [c](https://e.org) [d](#top) `[e](no.md)`\n" \
           "```\n[f](no2.md)\n```\n[g](z/#sec)"
    assert list(relative_links(text)) == ["x.md", "img/y.png", "z/"]


def runnable(name):
    """A module ``python3 -m name`` can run, found without importing it."""
    if name in sys.builtin_module_names:
        return True
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    if spec.submodule_search_locations is not None:  # a package: needs __main__
        return runnable(name + ".__main__")
    origin = spec.origin or ""
    if not origin.endswith(".py"):
        return True  # compiled or frozen (third-party tools such as pip, pytest)
    source = Path(origin).read_text(encoding="utf-8")
    return bool(re.search(r"""__name__\s*==\s*['"]__main__['"]""", source)) or \
        Path(origin).name == "__main__.py"


def named_modules():
    found = {}
    for md in MARKDOWN:
        for name in MODULE.findall(md.read_text(encoding="utf-8")):
            found.setdefault(name, md.relative_to(ROOT).as_posix())
    return found


def test_every_python_m_module_named_in_a_readme_runs():
    modules = named_modules()
    assert {"p1.iclevr", "p1.score", "pytest"} <= set(modules)
    sys.path.insert(0, str(ROOT))
    try:
        broken = {name: where for name, where in modules.items()
                  if not runnable(name)}
    finally:
        sys.path.remove(str(ROOT))
    assert broken == {}, f"python3 -m targets that do not exist or cannot run: {broken}"


def test_the_scripts_named_in_a_readme_exist():
    named = {s: md for md in MARKDOWN for s in SCRIPT.findall(md.read_text(encoding="utf-8"))}
    assert {"scripts/setup_env.sh", "hw2_1.sh"} <= set(named)
    missing = {s: md.relative_to(ROOT).as_posix() for s, md in named.items()
               if not (ROOT / s).is_file()}
    assert missing == {}, f"bash scripts named in a README but not in the repository: {missing}"


def test_the_quick_start_commands_exist():
    top = (ROOT / "README.md").read_text(encoding="utf-8")
    quick = top.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = FENCE.search(quick).group(0)
    assert "bash scripts/setup_env.sh" in block and "bash hw2_1.sh" in block
    for script in SCRIPT.findall(block):
        assert (ROOT / script).is_file(), script
    for name in MODULE.findall(block):
        sys.path.insert(0, str(ROOT))
        try:
            assert runnable(name), name
        finally:
            sys.path.remove(str(ROOT))
