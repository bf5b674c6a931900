"""Settings for `invoke validate`, as one frozen dataclass with one precedence order.

    defaults (here) < `validation:` in invoke.yaml < INVOKE_VALIDATION_* environment < command line

Invoke itself merges the first three (the defaults are registered with `Collection.configure`, the
project's `invoke.yaml` and `INVOKE_VALIDATION_<KEY>` variables override them); `load` applies the
command line on top, checks every key and value, and suggests a close match for unknown keys.
Secrets are never settings: they come from the environment only (see `secrets.py`).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

SECTION = "validation"

# Keys of the `validation:` section and their defaults. Lists are comma-separated strings so that
# invoke's environment loader (which cannot cast lists) can override them.
DEFAULTS: dict[str, Any] = {
    "flows": ".maestro",
    "results_dir": "build/validation",
    "apk": "",
    "device": "",
    "include_tags": "",
    "exclude_tags": "",
    "retries": 1,
    "flow_timeout": 600,
    "env": {},
    "maestro": "",
    "adb": "",
    "driver_startup_timeout": 180000,
    "devices": 1,
    "shard": "",
    "timings": "",
}

# What tasks.py registers with invoke: scalar keys as None, so that invoke's environment loader
# (which casts a variable to the type of the value it overrides) hands us the raw text to check.
INVOKE_DEFAULTS: dict[str, Any] = {key: ({} if isinstance(value, dict) else None) for key, value in DEFAULTS.items()}

_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Flow variables the harness sets itself; a user value would silently change production behaviour.
RESERVED_FLOW_ENV = ("SKIP_DATA_CLEANUP", "VALIDATION_RUN_ID")


@dataclass(frozen=True)
class Settings:
    flows: Path = Path(DEFAULTS["flows"])
    results_dir: Path = Path(DEFAULTS["results_dir"])
    apk: Path | None = None
    device: str = ""
    include_tags: tuple[str, ...] = ()
    exclude_tags: tuple[str, ...] = ()
    retries: int = DEFAULTS["retries"]
    flow_timeout: float = DEFAULTS["flow_timeout"]
    env: tuple[tuple[str, str], ...] = ()
    maestro: str = ""
    adb: str = ""
    driver_startup_timeout: int = DEFAULTS["driver_startup_timeout"]
    devices: int = DEFAULTS["devices"]
    shard: tuple[int, int] | None = None  # (index, count), 1-based index
    timings: Path | None = None
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def flow_env(self) -> dict[str, str]:
        return dict(self.env)


def _split_tags(value: Any, key: str) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, (list, tuple)):
        items = [str(v) for v in value]
    else:
        raise ConfigError(f"validation.{key} must be a comma-separated list of tags, got {value!r}",
                          fix=f"write {key}: \"smoke,production\"")
    return tuple(t.strip() for t in items if t.strip())


def _int(value: Any, key: str, minimum: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"validation.{key} must be a whole number, got {value!r}",
                          fix=f"set {key} to a number such as {DEFAULTS[key]}") from None
    if number < minimum or isinstance(value, bool):
        raise ConfigError(f"validation.{key} must be at least {minimum}, got {value!r}",
                          fix=f"set {key} to a number such as {DEFAULTS[key]}")
    return number


def _seconds(value: Any, key: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if number <= 0 or isinstance(value, bool):
        raise ConfigError(f"validation.{key} must be a positive number of seconds, got {value!r}",
                          fix=f"set {key} to e.g. {DEFAULTS[key]}")
    return number


def _shard(value: Any) -> tuple[int, int] | None:
    if value in (None, ""):
        return None
    index, sep, count = str(value).partition("/")
    try:
        shard = (int(index), int(count))
    except ValueError:
        shard = (0, 0)
    if not sep or not 1 <= shard[0] <= shard[1]:
        raise ConfigError(f"validation.shard must be I/N with 1 <= I <= N, got {value!r}",
                          fix="pass e.g. --shard 2/4 for the second of four shards")
    return shard


def parse_env_pairs(pairs: Mapping[str, Any] | list[str] | tuple[str, ...], origin: str) -> dict[str, str]:
    """Flow variables from a mapping (invoke.yaml) or KEY=VALUE strings (--env)."""
    result: dict[str, str] = {}
    if isinstance(pairs, Mapping):
        items = [(str(k), "" if v is None else str(v)) for k, v in pairs.items()]
    else:
        items = []
        for pair in pairs:
            key, sep, value = str(pair).partition("=")
            if not sep:
                raise ConfigError(f"{origin}: '{pair}' is not KEY=VALUE", fix="pass it as --env KEY=VALUE")
            items.append((key.strip(), value))
    for key, value in items:
        if not _ENV_KEY.match(key):
            raise ConfigError(f"{origin}: '{key}' is not a valid variable name",
                              fix="use letters, digits and underscores, not starting with a digit")
        if key in RESERVED_FLOW_ENV:
            raise ConfigError(f"{origin}: {key} is set by the harness itself and cannot be overridden",
                              fix=f"remove {key}; production runs always pass SKIP_DATA_CLEANUP=true")
        result[key] = value
    return result


def check_known_keys(section: Mapping[str, Any], known: Mapping[str, Any], where: str) -> None:
    unknown = [k for k in section if k not in known]
    if not unknown:
        return
    problems = []
    for key in unknown:
        close = difflib.get_close_matches(key, list(known), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        problems.append(f"unknown setting '{where}.{key}'{hint}")
    raise ConfigError("; ".join(problems), fix=f"known settings under {where}: {', '.join(sorted(known))}")


def load(section: Mapping[str, Any], cli: Mapping[str, Any]) -> Settings:
    """Build Settings from the merged invoke `validation` section and the task's flags.

    A flag left at None (or an empty list) means "not given" and does not override.
    """
    section = {key: value for key, value in section.items() if value is not None and value != {}}
    check_known_keys(section, DEFAULTS, SECTION)
    merged: dict[str, Any] = {**DEFAULTS, **section}
    sources = {key: "config" if key in section else "default" for key in DEFAULTS}
    env = parse_env_pairs(merged["env"] or {}, "validation.env in invoke.yaml")
    for key, value in cli.items():
        if value is None or value in ([], ()):
            continue
        if key == "env":
            env.update(parse_env_pairs(value, "--env"))
        elif key not in DEFAULTS:
            raise ConfigError(f"unknown option '{key}'")  # a programming error in tasks.py
        else:
            merged[key] = value
        sources[key] = "command line"
    flows = str(merged["flows"] or "").strip()
    if not flows:
        raise ConfigError("validation.flows is empty", fix="point it at the folder of Maestro flows, e.g. .maestro")
    results_dir = str(merged["results_dir"] or "").strip()
    if not results_dir:
        raise ConfigError("validation.results_dir is empty", fix="set it to a folder such as build/validation")
    apk = str(merged["apk"] or "").strip()
    return Settings(
        flows=Path(flows),
        results_dir=Path(results_dir),
        apk=Path(apk) if apk else None,
        device=str(merged["device"] or "").strip(),
        include_tags=_split_tags(merged["include_tags"], "include_tags"),
        exclude_tags=_split_tags(merged["exclude_tags"], "exclude_tags"),
        retries=_int(merged["retries"], "retries", 0),
        flow_timeout=_seconds(merged["flow_timeout"], "flow_timeout"),
        env=tuple(sorted(env.items())),
        maestro=str(merged["maestro"] or "").strip(),
        adb=str(merged["adb"] or "").strip(),
        driver_startup_timeout=_int(merged["driver_startup_timeout"], "driver_startup_timeout", 1000),
        devices=_int(merged["devices"], "devices", 1),
        shard=_shard(merged["shard"]),
        timings=Path(str(merged["timings"])) if merged["timings"] else None,
        sources=sources,
    )

