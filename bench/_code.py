"""Which code a benchmark measures: `--code snapshot` copies runtime/ (and imagetool/) as they
are now into the run's temp dir, compiles them, and runs them through a launcher like the
installed one, so one run measures one version of the code while others edit the checkout;
`--code as-is` runs the checkout through the installed launchers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from bench._common import REPO
from conformance.engines.procs import write_exec

PYRUNC = os.path.join(os.path.dirname(sys.executable), "pyrunc")
IMAGETOOL = os.path.join(os.path.dirname(sys.executable), "imagetool")


def pyrunc_under_test(mode: str, top: str) -> str:
    """snapshot: a launcher like the installed one (same interpreter and flags) whose
    sys.path points at a compiled copy of runtime/ taken now, so one run measures one version
    of the code while others edit the checkout; as-is: the installed pyrunc."""
    if mode == "as-is":
        return PYRUNC
    with open(PYRUNC) as f:
        launcher = f.read()
    line = f"sys.path.insert(0, {REPO!r})"
    if line not in launcher and line.replace("'", '"') not in launcher:
        raise SystemExit(f"bench: {PYRUNC} is not scripts/install.sh's launcher "
                         f"(no {line}); use --code as-is")
    src = os.path.join(top, "src")
    shutil.copytree(os.path.join(REPO, "runtime"), os.path.join(src, "runtime"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "compileall", "-q", src], check=True,
                   stdout=subprocess.DEVNULL)
    launcher = launcher.replace(line, f"sys.path.insert(0, {src!r})").replace(
        line.replace("'", '"'), f"sys.path.insert(0, {src!r})")
    return write_exec(os.path.join(top, "pyrunc"), launcher)


def snapshot_src(mode: str, top: str) -> str:
    """snapshot: a compiled copy of imagetool/ and runtime/ taken now (others edit the checkout
    while this runs), used through a launcher like the venv's; as-is: the checkout."""
    if mode == "as-is":
        return ""
    src = os.path.join(top, "src")
    for pkg in ("imagetool", "runtime"):
        shutil.copytree(os.path.join(REPO, pkg), os.path.join(src, pkg),
                        ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "compileall", "-q", src], check=True,
                   stdout=subprocess.DEVNULL)
    return src


def imagetool_launcher(src: str, top: str) -> str:
    if not src:
        return IMAGETOOL
    return write_exec(os.path.join(top, "imagetool"), f"""#!{sys.executable}
import sys
sys.path.insert(0, {src!r})
from imagetool.cli import main
if __name__ == '__main__':
    sys.exit(main())
""")


def pyrunc_env(mode: str, workdir: str) -> dict[str, str] | None:
    """snapshot: pyrunc runs from a copy of runtime/ taken now and compiled, first on
    PYTHONPATH (ahead of the checkout), so one run measures one version of the code with
    fresh bytecode even while others edit the checkout; as-is: the checkout as installed,
    our environment unchanged (PYTHONDONTWRITEBYTECODE and its __pycache__)."""
    if mode == "as-is":
        return None
    src = os.path.join(workdir, "src")
    shutil.copytree(os.path.join(REPO, "runtime"), os.path.join(src, "runtime"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "compileall", "-q", src], check=True,
                   stdout=subprocess.DEVNULL)
    env = dict(os.environ)
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def snapshot_launcher(workdir: str) -> str:
    """The pyrunc to run for `--code snapshot`. The installed launcher starts Python with -I
    (scripts/install.sh), which ignores PYTHONPATH and would run the checkout: then a copy of
    it, with the same interpreter and flags, that puts the snapshot first on sys.path."""
    with open(PYRUNC) as f:
        first = f.readline()
    parts = first[2:].split() if first.startswith("#!") else []
    if not any(p.startswith("-") and "I" in p for p in parts[1:]):
        return PYRUNC  # a launcher that honours PYTHONPATH
    path = os.path.join(workdir, "pyrunc")
    with open(path, "w") as f:
        f.write(f"#!{' '.join(parts)}\nimport sys\n"
                f"sys.path.insert(0, {os.path.join(workdir, 'src')!r})\n"
                "from runtime.cli import entry\nentry()\n")
    os.chmod(path, 0o755)
    return path
