"""Run the project's nox sessions from a project virtual environment, on any Python 3.11+.

    python3 tools/bootstrap.py -s demo     the demo on the SIMULATED toolchain
    python3 tools/bootstrap.py             the tests (lint, typecheck, pytest, workflows)
    python3 tools/bootstrap.py --venv      only make .venv (nox, invoke, prodval); then `. .venv/bin/activate`

Debian 12 and Ubuntu 24.04 refuse `pip install` into their own Python (PEP 668, "externally-managed-
environment"). So this creates `.venv` in the project (once), installs nox and the package (`-e tools`)
into it (again only when tools/pyproject.toml changed), then runs `.venv/bin/python -m nox` with the
arguments given. Standard library only: it runs on the interpreter the machine came with.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
NOX = "nox>=2024.10.9"  # `@nox.session(default=False)` (noxfile.py)
STAMP = ".prodval-bootstrap"  # in .venv: what was installed, so a changed pyproject.toml reinstalls


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def missing_venv_support() -> str:
    """Why this Python cannot make a virtual environment with pip, and the package that fixes it; "" if it can.

    Debian and Ubuntu split `ensurepip` (and the pip wheel it installs) into python3.X-venv."""
    try:
        import ensurepip  # noqa: F401, PLC0415 (only its presence matters)
    except ImportError:
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        return (f"{sys.executable} (Python {version}) cannot create a virtual environment: its `ensurepip` module "
                f"is missing. On Debian or Ubuntu install it with: sudo apt install python3-venv "
                f"(python{version}-venv for this Python), then run this command again.")
    return ""


def stamp_text() -> str:
    """What .venv holds: nox's pin and the package's pyproject.toml. Not the Python running this: .venv keeps the
    interpreter it was made with (one that is gone makes it anew), whichever python3 runs this command."""
    pyproject = (ROOT / "tools" / "pyproject.toml").read_bytes()
    return f"{NOX}\n{hashlib.sha256(pyproject).hexdigest()}\n"


class CannotBootstrap(Exception):
    """What stops the bootstrap, as one message with the fix."""


def has_pip(python: Path) -> bool:
    return subprocess.run([str(python), "-m", "pip", "--version"], capture_output=True, check=False).returncode == 0


def ensure_venv() -> Path:
    """The project's .venv with nox and prodval installed; made, repaired or refreshed when needed."""
    python = venv_python(VENV)
    stamp = VENV / STAMP
    wanted = stamp_text()
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    shown = f"{VENV.relative_to(ROOT)}/"
    if not python.exists() or not has_pip(python):
        problem = missing_venv_support()
        if problem:
            raise CannotBootstrap(problem)
        try:
            if not python.exists():
                print(f"bootstrap: creating the project's virtual environment {shown}", flush=True)
                # clear: a .venv whose interpreter is gone (e.g. a removed pyenv Python) is made anew
                venv.EnvBuilder(with_pip=True, clear=VENV.exists()).create(VENV)
            else:  # e.g. its creation was interrupted before pip: add pip, keep what is installed
                print(f"bootstrap: {shown} has no pip; adding it", flush=True)
                subprocess.run([str(python), "-m", "ensurepip", "--upgrade", "--default-pip"], check=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            raise CannotBootstrap(f"could not make the virtual environment {VENV} ({exc}): remove that folder "
                                  "and run this command again") from exc
    print(f"bootstrap: installing nox and the prodval package (-e tools) into {shown}", flush=True)
    try:
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        NOX, "-e", str(ROOT / "tools")], check=True)
    except subprocess.CalledProcessError as exc:
        raise CannotBootstrap(f"installing into {VENV} failed (exit {exc.returncode}; pip's message is above): "
                              "check the network or the package index (pip config list), then run this "
                              "command again") from exc
    stamp.write_text(wanted)
    return python


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 11):  # noqa: UP036 (this runs on whatever python3 the machine has)
        print(f"bootstrap: the project needs Python 3.11 or newer; {sys.executable} is "
              f"{sys.version.split()[0]}: run this with a newer python3", file=sys.stderr)
        return 2
    try:
        python = ensure_venv()
    except CannotBootstrap as exc:
        print(f"bootstrap: {exc}", file=sys.stderr)
        return 2
    if argv[:1] == ["--venv"]:
        bindir = venv_python(VENV).parent.relative_to(ROOT)
        print(f"bootstrap: ready. Use {bindir}/invoke (or `. {bindir}/activate`, then `invoke ...`)")
        return 0
    os.chdir(ROOT)
    return subprocess.run([str(python), "-m", "nox", *argv], check=False).returncode


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
