"""Settings for `invoke validate`, as one frozen dataclass with one precedence order.

    defaults (here) < `validation:` in invoke.yaml < INVOKE_VALIDATION_* environment < command line

Invoke itself merges the first three (the defaults are registered with `Collection.configure`, the
project's `invoke.yaml` and `INVOKE_VALIDATION_<KEY>` variables override them); `load` applies the
command line on top, checks every key and value, and suggests a close match for unknown keys.
Secrets are never settings: they come from the environment only (see `secrets.py`).
"""

from __future__ import annotations

import difflib
import math
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
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
    "config": "",  # Maestro workspace config (--config); default: the flows folder's config.yaml / config.yml
    "retries": 1,
    "flow_timeout": 600,
    "env": {},
    "maestro": "",
    "adb": "",
    "driver_startup_timeout": 180000,
    "devices": 1,
    "shard": "",
    "timings": "",
    "session_wait": 22,  # seconds a device rests after a killed flow: Maestro's session stays "alive" 21 s
    "install_timeout": 300,  # seconds for `adb install` of the APK
    "secret_env": "",  # more variable names (comma-separated) whose values are masked like secrets
    "device_wait": 600,  # seconds validate waits for a device another run (another results folder) is using
}
MAX_RETRIES = 10
MAX_FLOW_TIMEOUT = 24 * 3600  # a flow that needs longer than a day is hung

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
    device: tuple[str, ...] = ()  # serials to run on (comma-separated on the command line)
    include_tags: tuple[str, ...] = ()
    exclude_tags: tuple[str, ...] = ()
    config: Path | None = None
    retries: int = DEFAULTS["retries"]
    flow_timeout: float = DEFAULTS["flow_timeout"]
    env: tuple[tuple[str, str], ...] = ()
    maestro: str = ""
    adb: str = ""
    driver_startup_timeout: int = DEFAULTS["driver_startup_timeout"]
    devices: int = DEFAULTS["devices"]
    shard: tuple[int, int] | None = None  # (index, count), 1-based index
    timings: Path | None = None
    session_wait: float = DEFAULTS["session_wait"]
    install_timeout: float = DEFAULTS["install_timeout"]
    secret_env: tuple[str, ...] = ()
    device_wait: float = DEFAULTS["device_wait"]

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


def _number(value: Any, where: str, example: Any, *, minimum: float, whole: bool = False,
            positive: bool = False, maximum: float = math.inf) -> float:
    """A number from invoke.yaml, the environment (text) or a flag; `where` names the setting.

    `minimum` is inclusive; `positive` means strictly above zero (seconds to wait, for instance).
    """
    kind = "a whole number" if whole else "a positive number" if positive else "a number"
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    fix = f"set {where.rsplit('.', 1)[-1]} to a number such as {example}"
    if isinstance(value, bool) or math.isnan(number) or (whole and number != int(number)):
        raise ConfigError(f"{where} must be {kind}, got {value!r}", fix=fix)
    if positive and number <= 0:
        raise ConfigError(f"{where} must be a positive number, got {value!r}", fix=fix)
    if number < minimum:
        raise ConfigError(f"{where} must be at least {minimum:g}, got {value!r}", fix=fix)
    if math.isinf(number) or number > maximum:
        limit = f"at most {maximum:g}" if math.isfinite(maximum) else "finite"
        raise ConfigError(f"{where} must be {limit}, got {value!r}", fix=fix)
    return number


def _pairs(pairs: Mapping[str, Any] | list[str] | tuple[str, ...], origin: str, form: str, flag: str) -> list[tuple[str, str]]:
    """NAME=VALUE items from a mapping (invoke.yaml) or strings (a repeatable flag)."""
    if isinstance(pairs, Mapping):
        return [(str(k), "" if v is None else str(v)) for k, v in pairs.items()]
    items = []
    for pair in pairs:
        key, sep, value = str(pair).partition("=")
        if not sep:
            raise ConfigError(f"{origin}: '{pair}' is not {form}", fix=f"pass it as {flag} {form}")
        items.append((key.strip(), value))
    return items


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
    for key, value in _pairs(pairs, origin, "KEY=VALUE", "--env"):
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


def _merge(section: Mapping[str, Any], defaults: Mapping[str, Any], name: str) -> dict[str, Any]:
    """Defaults overlaid by the keys invoke merged (invoke.yaml, then INVOKE_* variables), unknown keys refused.

    Keys registered with invoke but set nowhere arrive as None (or {}): they keep their default.
    """
    given = {key: value for key, value in section.items() if value is not None and value != {}}
    check_known_keys(given, defaults, name)
    return {**defaults, **given}


def load(section: Mapping[str, Any], cli: Mapping[str, Any]) -> Settings:
    """Build Settings from the merged invoke `validation` section and the task's flags.

    A flag left at None (or an empty list) means "not given" and does not override.
    """
    merged = _merge(section, DEFAULTS, SECTION)
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
        device=tuple(d.strip() for d in str(merged["device"] or "").split(",") if d.strip()),
        include_tags=_split_tags(merged["include_tags"], "include_tags"),
        exclude_tags=_split_tags(merged["exclude_tags"], "exclude_tags"),
        config=Path(str(merged["config"]).strip()) if str(merged["config"] or "").strip() else None,
        retries=int(_number(merged["retries"], "validation.retries", DEFAULTS["retries"], minimum=0, whole=True,
                            maximum=MAX_RETRIES)),
        flow_timeout=_number(merged["flow_timeout"], "validation.flow_timeout", DEFAULTS["flow_timeout"], minimum=0,
                             positive=True, maximum=MAX_FLOW_TIMEOUT),
        env=tuple(sorted(env.items())),
        maestro=str(merged["maestro"] or "").strip(),
        adb=str(merged["adb"] or "").strip(),
        driver_startup_timeout=int(_number(merged["driver_startup_timeout"], "validation.driver_startup_timeout",
                                           DEFAULTS["driver_startup_timeout"], minimum=1000, whole=True)),
        devices=int(_number(merged["devices"], "validation.devices", DEFAULTS["devices"], minimum=1, whole=True)),
        shard=_shard(merged["shard"]),
        timings=Path(str(merged["timings"])) if merged["timings"] else None,
        session_wait=_number(merged["session_wait"], "validation.session_wait", DEFAULTS["session_wait"], minimum=0),
        install_timeout=_number(merged["install_timeout"], "validation.install_timeout", DEFAULTS["install_timeout"],
                                minimum=0, positive=True, maximum=MAX_FLOW_TIMEOUT),
        secret_env=_secret_env(merged["secret_env"]),
        device_wait=_number(merged["device_wait"], "validation.device_wait", DEFAULTS["device_wait"], minimum=0),
    )


def _secret_env(value: Any) -> tuple[str, ...]:
    """Variable names from `validation.secret_env` (a list, or comma-separated text)."""
    items = value if isinstance(value, (list, tuple)) else str(value or "").split(",")
    names = tuple(str(n).strip() for n in items if str(n).strip())
    for name in names:
        if not _ENV_KEY.match(name):
            raise ConfigError(f"validation.secret_env: '{name}' is not a variable name",
                              fix="list variable names such as MY_SESSION_COOKIE, comma-separated")
    return names


# ---- `invoke build-apk`: the `build:` section ---------------------------------------------------------
# Same precedence: defaults < `build:` in invoke.yaml < INVOKE_BUILD_<KEY> < flags. The results folder is
# the chain's one (`validation.results_dir`, or --results-dir), so validate and notify find the record.

BUILD_SECTION = "build"
BUILD_DEFAULTS: dict[str, Any] = {
    "project_dir": "android",  # where the command runs (Gradle: the Android project)
    "module": "app",
    "variant": "release",  # e.g. productionRelease with flavors
    "command": "",  # default ./gradlew :<module>:assemble<Variant>; e.g. "eas build --local ... --output app.apk"
    "output": "",  # where a custom command writes the APK (path or glob, from the repository root)
    "abi": "x86_64",  # which ABI split to take when the build splits by ABI
    "properties": {},  # Gradle project properties: production settings such as API_BASE_URL
    "signing_property_prefix": "RELEASE_",  # <prefix>STORE_FILE, _STORE_PASSWORD, _KEY_ALIAS, _KEY_PASSWORD
    "apk_name": "app-production.apk",  # the copy in the results folder
    "timeout": 3600,
}
BUILD_INVOKE_DEFAULTS: dict[str, Any] = {
    key: ({} if isinstance(value, dict) else None) for key, value in BUILD_DEFAULTS.items()
}
_PROPERTY_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
_VARIANT = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")
_MODULE = re.compile(r"^[A-Za-z0-9_-]+(?::[A-Za-z0-9_-]+)*$")


@dataclass(frozen=True)
class BuildSettings:
    project_dir: Path = Path(BUILD_DEFAULTS["project_dir"])
    module: str = BUILD_DEFAULTS["module"]
    variant: str = BUILD_DEFAULTS["variant"]
    command: tuple[str, ...] = ()  # () means the Gradle default
    output: str = ""
    abi: str = BUILD_DEFAULTS["abi"]
    properties: tuple[tuple[str, str], ...] = ()
    signing_property_prefix: str = BUILD_DEFAULTS["signing_property_prefix"]
    apk_name: str = BUILD_DEFAULTS["apk_name"]
    timeout: float = BUILD_DEFAULTS["timeout"]
    results_dir: Path = Path(DEFAULTS["results_dir"])
    secret_env: tuple[str, ...] = ()  # validation.secret_env


def _gradle_properties(pairs: Any, origin: str) -> dict[str, str]:
    items = _pairs(pairs, origin, "NAME=VALUE", "--property")
    for key, _ in items:
        if not _PROPERTY_NAME.match(key):
            raise ConfigError(f"{origin}: '{key}' is not a valid Gradle property name",
                              fix="use letters, digits, '_' and '.', not starting with a digit")
    return dict(items)


def _checked(value: Any, key: str, pattern: re.Pattern[str], example: str) -> str:
    text = str(value if value is not None else "").strip()
    if not pattern.match(text):
        raise ConfigError(f"build.{key} is not valid: {value!r}", fix=f"set {key} to something like {example}")
    return text


def load_build(section: Mapping[str, Any], validation: Mapping[str, Any], cli: Mapping[str, Any]) -> BuildSettings:
    """BuildSettings from the merged `build:` section, the `validation:` section (results folder) and flags."""
    merged = _merge(section, BUILD_DEFAULTS, BUILD_SECTION)
    properties = _gradle_properties(merged["properties"] or {}, "build.properties in invoke.yaml")
    results_dir = str(validation.get("results_dir") or DEFAULTS["results_dir"])
    for key, value in cli.items():
        if value is None or value in ([], ()):
            continue
        if key == "properties":
            properties.update(_gradle_properties(value, "--property"))
        elif key == "results_dir":
            results_dir = str(value)
        elif key not in BUILD_DEFAULTS:
            raise ConfigError(f"unknown option '{key}'")  # a programming error in tasks.py
        else:
            merged[key] = value
    try:
        command = tuple(shlex.split(str(merged["command"] or "")))
    except ValueError as exc:
        raise ConfigError(f"build.command cannot be split into words: {exc}", fix="check its quotes") from None
    project_dir = str(merged["project_dir"] or "").strip()
    if not project_dir:
        raise ConfigError("build.project_dir is empty", fix="set it to the Android project folder, e.g. android")
    apk_name = str(merged["apk_name"] or "").strip()
    if not apk_name.endswith(".apk") or "/" in apk_name or apk_name.startswith("."):
        raise ConfigError(f"build.apk_name must be a file name ending in .apk, got {apk_name!r}",
                          fix="set it to e.g. app-production.apk")
    prefix = str(merged["signing_property_prefix"] or "")
    if prefix and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", prefix):
        raise ConfigError(f"build.signing_property_prefix is not valid: {prefix!r}",
                          fix="use letters, digits and '_', e.g. RELEASE_ or MYAPP_UPLOAD_")
    if not results_dir.strip():
        raise ConfigError("the results folder is empty", fix="set validation.results_dir or pass --results-dir")
    return BuildSettings(
        project_dir=Path(project_dir),
        module=_checked(merged["module"], "module", _MODULE, "app"),
        variant=_checked(merged["variant"], "variant", _VARIANT, "release or productionRelease"),
        command=command,
        output=str(merged["output"] or "").strip(),
        abi=str(merged["abi"] or "").strip(),
        properties=tuple(sorted(properties.items())),
        signing_property_prefix=prefix,
        apk_name=apk_name,
        timeout=_number(merged["timeout"], "build.timeout", BUILD_DEFAULTS["timeout"], minimum=0, positive=True),
        results_dir=Path(results_dir),
        secret_env=_secret_env(validation.get("secret_env")),
    )


# --- `invoke notify` ------------------------------------------------------------------------------
# The `notify:` section holds what is not secret; the channels' secrets and addresses come from the
# environment only (SLACK_WEBHOOK_URL, SMTP_*, ALERT_EMAIL_*, PAGERDUTY_*, GITHUB_*): see alerts/.

NOTIFY_SECTION = "notify"
NOTIFY_ON = ("failure", "always")
NOTIFY_DEFAULTS: dict[str, Any] = {
    # failure: alert on fail/error, and a recovery after a failed run; always: every run. (Not "on": YAML
    # reads an unquoted `on` key as the boolean true.)
    "alert_on": "failure",
    "environment": "production",  # named in alerts and in PagerDuty's dedup key
    "check_name": "production-validation",  # the commit status context and part of the dedup key
    "deployed_sha": "",  # the deployed commit (default GITHUB_SHA; after workflow_run pass its head_sha)
    "artifacts_url": "",  # where the results folder can be browsed (default in Actions: the run page)
    "report_url": "",  # where report.html is served; default <artifacts_url>/report.html when that is set
    "timeout": 10,  # seconds per request
    "retries": 3,  # retries after the first try (429, 5xx, network errors)
    "retry_backoff": 1.0,  # seconds before the first retry, doubled each time
    "max_retry_after": 30,  # cap on a server's Retry-After and on the backoff, seconds
    # Wall-clock bounds, whatever a server does (a byte every few seconds defeats a per-read timeout):
    "channel_deadline": 60,  # seconds for one channel, retries included (channels go concurrently)
    "deadline": 100,  # seconds for all deliveries of a run, the previous-run lookup included
}
NOTIFY_INVOKE_DEFAULTS: dict[str, Any] = dict.fromkeys(NOTIFY_DEFAULTS)


@dataclass(frozen=True)
class NotifySettings:
    results_dir: Path = Path(DEFAULTS["results_dir"])
    on: str = NOTIFY_DEFAULTS["alert_on"]
    previous: Path | None = None
    test: bool = False
    dry_run: bool = False
    environment: str = NOTIFY_DEFAULTS["environment"]
    check_name: str = NOTIFY_DEFAULTS["check_name"]
    deployed_sha: str = ""
    artifacts_url: str = ""
    report_url: str = ""
    timeout: float = NOTIFY_DEFAULTS["timeout"]
    retries: int = NOTIFY_DEFAULTS["retries"]
    retry_backoff: float = NOTIFY_DEFAULTS["retry_backoff"]
    max_retry_after: float = NOTIFY_DEFAULTS["max_retry_after"]
    channel_deadline: float = NOTIFY_DEFAULTS["channel_deadline"]
    deadline: float = NOTIFY_DEFAULTS["deadline"]
    secret_env: tuple[str, ...] = ()  # validation.secret_env


def _notify_number(value: Any, key: str, *, minimum: float, whole: bool = False,
                   maximum: float = math.inf) -> float:
    return _number(value, f"notify.{key}", NOTIFY_DEFAULTS[key], minimum=minimum, whole=whole, maximum=maximum)


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def load_notify(section: Mapping[str, Any], validation: Mapping[str, Any], cli: Mapping[str, Any]) -> NotifySettings:
    """NotifySettings from the merged `notify:` section, `validation.results_dir` and the task's flags."""
    merged = _merge(section, NOTIFY_DEFAULTS, NOTIFY_SECTION)
    if cli.get("on") is not None:
        merged["alert_on"] = cli["on"]
    on = _text(merged["alert_on"]).lower()
    if on not in NOTIFY_ON:
        close = difflib.get_close_matches(on, NOTIFY_ON, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"notify.alert_on (--on) must be one of {', '.join(NOTIFY_ON)}, got {merged['alert_on']!r}{hint}",
                          fix="use --on failure (alert on fail, error and recovery) or --on always")
    results_dir = _text(cli.get("results_dir")) or _text(validation.get("results_dir")) or DEFAULTS["results_dir"]
    previous = _text(cli.get("previous"))
    return NotifySettings(
        results_dir=Path(results_dir),
        on=on,
        previous=Path(previous) if previous else None,
        test=bool(cli.get("test")),
        dry_run=bool(cli.get("dry_run")),
        environment=_text(merged["environment"]) or NOTIFY_DEFAULTS["environment"],
        check_name=_text(merged["check_name"]) or NOTIFY_DEFAULTS["check_name"],
        deployed_sha=_text(merged["deployed_sha"]),
        artifacts_url=_text(merged["artifacts_url"]),
        report_url=_text(merged["report_url"]),
        timeout=_notify_number(merged["timeout"], "timeout", minimum=0.1),
        retries=int(_notify_number(merged["retries"], "retries", minimum=0, whole=True)),
        retry_backoff=_notify_number(merged["retry_backoff"], "retry_backoff", minimum=0),
        max_retry_after=_notify_number(merged["max_retry_after"], "max_retry_after", minimum=0),
        channel_deadline=_notify_number(merged["channel_deadline"], "channel_deadline", minimum=0.1, maximum=3600),
        deadline=_notify_number(merged["deadline"], "deadline", minimum=0.1, maximum=3600),
        secret_env=_secret_env(validation.get("secret_env")),
    )


# ---- `invoke emulator.*`, `doctor`, `setup`: the `emulator:` section ------------------------------------
# Same precedence: defaults < `emulator:` in invoke.yaml < INVOKE_EMULATOR_<KEY> < flags.

EMULATOR_SECTION = "emulator"
DEFAULT_EMULATOR_OPTIONS = "-no-window -gpu swiftshader_indirect -noaudio -no-boot-anim -no-snapshot-save"
MAESTRO_RELEASE_URL = "https://github.com/mobile-dev-inc/maestro/releases/download/cli-{version}/maestro.zip"
# SHA-256 of the official maestro.zip per release, as pinned by Maestro's own Homebrew formula (JReleaser) and the
# AUR package; used when `maestro_sha256` is not set and `maestro_url` is the official release.
MAESTRO_RELEASE_SHA256 = {
    "2.8.0": "b3e561161904fb391875ca5834d5b22cf0b01c052dd1b408ad83e30d8f8951b3",
}
EMULATOR_DEFAULTS: dict[str, Any] = {
    "avd": "",  # default prodval-api<api_level>-<target>-<arch>; further emulators add -2, -3, ...
    "api_level": 34,
    "target": "google_apis",
    "arch": "x86_64",
    "device_profile": "",  # avdmanager --device, e.g. pixel_6 (empty: avdmanager's default)
    "count": 1,
    "port": 5554,  # first console port; further emulators take the next free even ports
    "boot_timeout": 600,  # seconds per boot attempt (one cold-boot retry follows a timeout)
    "boot_poll": 2,  # seconds between `getprop sys.boot_completed` checks
    "stop_timeout": 20,  # seconds `emu kill` gets before the process group is terminated, then killed
    "emulator_options": DEFAULT_EMULATOR_OPTIONS,  # replaces the defaults when set
    "wipe": False,  # -wipe-data on every start
    "cores": 2,  # config.ini hw.cpu.ncore
    "ram_size": "2048M",  # hw.ramSize; empty keeps the AVD's value
    "heap_size": "",  # hw.heapSize, e.g. 512M
    "data_partition_size": "",  # disk.dataPartition.size, e.g. 6G
    "disable_animations": True,
    "disable_spell_checker": True,
    "maestro_version": "2.8.0",  # what `invoke setup` installs
    "maestro_url": MAESTRO_RELEASE_URL,  # {version} is replaced
    "maestro_sha256": "",  # the archive's SHA-256; known for the official release of the default version
}
EMULATOR_INVOKE_DEFAULTS: dict[str, Any] = dict.fromkeys(EMULATOR_DEFAULTS)
EMULATOR_ARCHS = ("x86_64", "x86", "arm64-v8a", "armeabi-v7a")
FIRST_CONSOLE_PORT, LAST_CONSOLE_PORT = 5554, 5584  # the 16 console ports adb scans for emulators
_AVD_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
_SIZE = re.compile(r"^\d+[KMG]?$")


@dataclass(frozen=True)
class EmulatorSettings:
    avd: str = "prodval-api34-google_apis-x86_64"
    api_level: int = 34
    target: str = "google_apis"
    arch: str = "x86_64"
    device_profile: str = ""
    count: int = 1
    port: int = 5554
    boot_timeout: float = 600
    boot_poll: float = 2
    stop_timeout: float = 20
    emulator_options: tuple[str, ...] = tuple(DEFAULT_EMULATOR_OPTIONS.split())
    wipe: bool = False
    cores: int = 2
    ram_size: str = "2048M"
    heap_size: str = ""
    data_partition_size: str = ""
    disable_animations: bool = True
    disable_spell_checker: bool = True
    maestro_version: str = "2.8.0"
    maestro_url: str = MAESTRO_RELEASE_URL
    maestro_sha256: str = ""

    @property
    def system_image(self) -> str:
        """The sdkmanager package of the system image, e.g. system-images;android-34;google_apis;x86_64."""
        return f"system-images;android-{self.api_level};{self.target};{self.arch}"

    @property
    def download_url(self) -> str:
        return self.maestro_url.replace("{version}", self.maestro_version)

    @property
    def expected_sha256(self) -> str:
        """The checksum `invoke setup` verifies: the pinned one, else the known one of an official release."""
        if self.maestro_sha256:
            return self.maestro_sha256
        return MAESTRO_RELEASE_SHA256.get(self.maestro_version, "") if self.maestro_url == MAESTRO_RELEASE_URL else ""


def _emu_bool(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"emulator.{key} must be true or false, got {value!r}", fix=f"set {key}: true or {key}: false")


def _emu_number(value: Any, key: str, *, minimum: float, whole: bool = False) -> float:
    return _number(value, f"emulator.{key}", EMULATOR_DEFAULTS[key], minimum=minimum, whole=whole)


def _emu_text(value: Any, key: str, pattern: re.Pattern[str] | None, example: str) -> str:
    text = "" if value is None else str(value).strip()
    if text and pattern is not None and not pattern.match(text):
        raise ConfigError(f"emulator.{key} is not valid: {value!r}", fix=f"set {key} to something like {example}")
    return text


def load_emulator(section: Mapping[str, Any], cli: Mapping[str, Any]) -> EmulatorSettings:
    """EmulatorSettings from the merged `emulator:` section and the task's flags (None: not given)."""
    merged = _merge(section, EMULATOR_DEFAULTS, EMULATOR_SECTION)
    for key, value in cli.items():
        if value is None:
            continue
        if key not in EMULATOR_DEFAULTS:
            raise ConfigError(f"unknown option '{key}'")  # a programming error in tasks.py
        merged[key] = value
    api_level = int(_emu_number(merged["api_level"], "api_level", minimum=21, whole=True))
    target = _emu_text(merged["target"], "target", re.compile(r"^[a-z][a-z0-9_]*$"), "google_apis") or "google_apis"
    arch = _emu_text(merged["arch"], "arch", None, "x86_64") or "x86_64"
    if arch not in EMULATOR_ARCHS:
        close = difflib.get_close_matches(arch, EMULATOR_ARCHS, n=1)
        raise ConfigError(f"emulator.arch must be one of {', '.join(EMULATOR_ARCHS)}, got {arch!r}"
                          + (f" (did you mean '{close[0]}'?)" if close else ""), fix="use x86_64 on Linux runners")
    avd = _emu_text(merged["avd"], "avd", _AVD_NAME, "prodval-api34") or f"prodval-api{api_level}-{target}-{arch}"
    count = int(_emu_number(merged["count"], "count", minimum=1, whole=True))
    port = int(_emu_number(merged["port"], "port", minimum=FIRST_CONSOLE_PORT, whole=True))
    if port % 2 or port > LAST_CONSOLE_PORT:
        raise ConfigError(f"emulator.port must be an even console port from {FIRST_CONSOLE_PORT} to "
                          f"{LAST_CONSOLE_PORT} (the ones adb scans), got {merged['port']!r}", fix="use e.g. 5554")
    options_text = merged["emulator_options"]
    try:
        options = tuple(str(o) for o in options_text) if isinstance(options_text, (list, tuple)) else tuple(
            shlex.split(str(options_text or "")))
    except ValueError as exc:
        raise ConfigError(f"emulator.emulator_options cannot be split into words: {exc}", fix="check its quotes") from None
    for key in ("-avd", "-port", "-ports"):
        if key in options:
            raise ConfigError(f"emulator.emulator_options must not contain {key}: the harness sets it",
                              fix="use --avd / --port (emulator.avd, emulator.port) instead")
    sha256 = _emu_text(merged["maestro_sha256"], "maestro_sha256", re.compile(r"^[0-9a-fA-F]{64}$"),
                       "the 64 hex digits of `sha256sum maestro.zip`").lower()
    url = _emu_text(merged["maestro_url"], "maestro_url", re.compile(r"^https?://\S+$"), MAESTRO_RELEASE_URL)
    version = _emu_text(merged["maestro_version"], "maestro_version", re.compile(r"^[0-9][0-9A-Za-z.+-]*$"), "2.8.0")
    return EmulatorSettings(
        avd=avd,
        api_level=api_level,
        target=target,
        arch=arch,
        device_profile=_emu_text(merged["device_profile"], "device_profile", re.compile(r"^[\w .()-]+$"), "pixel_6"),
        count=count,
        port=port,
        boot_timeout=_emu_number(merged["boot_timeout"], "boot_timeout", minimum=1),
        boot_poll=_emu_number(merged["boot_poll"], "boot_poll", minimum=0.05),
        stop_timeout=_emu_number(merged["stop_timeout"], "stop_timeout", minimum=0),
        emulator_options=options,
        wipe=_emu_bool(merged["wipe"], "wipe"),
        cores=int(_emu_number(merged["cores"], "cores", minimum=1, whole=True)),
        ram_size=_emu_text(merged["ram_size"], "ram_size", _SIZE, "2048M"),
        heap_size=_emu_text(merged["heap_size"], "heap_size", _SIZE, "512M"),
        data_partition_size=_emu_text(merged["data_partition_size"], "data_partition_size", _SIZE, "6G"),
        disable_animations=_emu_bool(merged["disable_animations"], "disable_animations"),
        disable_spell_checker=_emu_bool(merged["disable_spell_checker"], "disable_spell_checker"),
        maestro_version=version or EMULATOR_DEFAULTS["maestro_version"],
        maestro_url=url or MAESTRO_RELEASE_URL,
        maestro_sha256=sha256,
    )

