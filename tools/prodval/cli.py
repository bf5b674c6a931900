"""What the invoke tasks call: build settings, run, and turn errors into exit codes (only here)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .console import Console
from .errors import ValidationError
from .settings import load


def validate(section: Mapping[str, Any], flags: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> int:
    from .validate import run_validation

    environ = os.environ if environ is None else environ
    console = Console(environ)
    try:
        settings = load(section, flags)
    except ValidationError as exc:
        console.error(str(exc), title="configuration")
        return exc.exit_code
    return run_validation(settings, environ, console)
