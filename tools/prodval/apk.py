"""`invoke build-apk`: build the production APK, sign it from secrets, find it, prove what it is.

The first link of `invoke build-apk validate notify`. It starts a new run record (stage `build`), runs
Gradle (or the configured command, e.g. EAS) with the production settings as Gradle project
properties, signs the release from the `ANDROID_KEYSTORE_*` secrets through `ORG_GRADLE_PROJECT_*`
variables (never the command line), finds the APK Gradle wrote, reads its identity from its own bytes
(`apkfile`), copies it to `<results-dir>/app-production.apk` and records what it is. A failed build is
recorded with verdict `error`, so a `validate` later in the chain runs nothing against a stale APK.

What `validate` checks of the APK it tests (the record's, or --apk) is `apkcheck.py`'s.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import glob
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .apkfile import ApkInfo, inspect_apk
from .commands import display, find_tool, stream
from .console import Console, relative_display
from .errors import ApkError, CommandFailed, ConfigError
from .outcomes import Verdict
from .results import BUILD_STAGE, RecordWriter, RunRecord
from .secrets import Redactor
from .settings import BuildSettings
from .stage import stage

STAGE = BUILD_STAGE
KEYSTORE_VAR = "ANDROID_KEYSTORE_BASE64"
STORE_PASSWORD_VAR = "ANDROID_KEYSTORE_PASSWORD"  # noqa: S105 (a variable name, not a password)
KEY_ALIAS_VAR = "ANDROID_KEY_ALIAS"
KEY_PASSWORD_VAR = "ANDROID_KEY_PASSWORD"  # noqa: S105
SIGNING_VARS = (KEYSTORE_VAR, STORE_PASSWORD_VAR, KEY_ALIAS_VAR, KEY_PASSWORD_VAR)
GRADLE_EXECUTABLES = ("gradlew", "gradle")
LOG_DIR = "build"  # inside the results folder: the build's stdout.log and stderr.log

GRADLEW_HINT = (
    "generate the Gradle wrapper in the Android project (`gradle wrapper` in android/, then commit gradlew "
    "and gradle/wrapper/), or set build.command in invoke.yaml"
)
UNSIGNED_FIX = (
    f"set {KEYSTORE_VAR}, {STORE_PASSWORD_VAR} and {KEY_ALIAS_VAR} (the release signingConfig reads them as "
    "Gradle properties), or give the release build type a signingConfig in app/build.gradle.kts"
)
AAB_FIX = (
    "an emulator installs APKs only: build with an assemble task (build.command unset, or "
    "`./gradlew :app:assembleRelease`); with EAS give the production profile \"android\": {\"buildType\": \"apk\"} "
    "in eas.json and set build.output to the --output file"
)


# ---- plan (pure) -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class BuildPlan:
    argv: tuple[str, ...]  # argv[0] as configured; resolved by `resolve_executable`
    cwd: Path
    gradle: bool  # a Gradle command: properties go as -Pname=value
    property_env: tuple[tuple[str, str], ...]  # for other commands: ORG_GRADLE_PROJECT_<name>
    apk_root: Path  # <project>/<module>/build/outputs/apk
    bundle_root: Path  # <project>/<module>/build/outputs/bundle


def gradle_task(module: str, variant: str) -> str:
    return f":{module}:assemble{variant[0].upper()}{variant[1:]}"


def plan_build(settings: BuildSettings) -> BuildPlan:
    argv = list(settings.command) or ["./gradlew", gradle_task(settings.module, settings.variant)]
    gradle = Path(argv[0]).name in GRADLE_EXECUTABLES
    properties = list(settings.properties)
    if gradle:
        argv += [f"-P{name}={value}" for name, value in properties]
    outputs = settings.project_dir / settings.module.replace(":", "/") / "build" / "outputs"
    return BuildPlan(
        argv=tuple(argv),
        cwd=settings.project_dir,
        gradle=gradle,
        property_env=() if gradle else tuple((f"ORG_GRADLE_PROJECT_{n}", v) for n, v in properties),
        apk_root=outputs / "apk",
        bundle_root=outputs / "bundle",
    )


def signing_properties(prefix: str, keystore: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """The ORG_GRADLE_PROJECT_* variables the release signingConfig reads."""
    store_password = environ.get(STORE_PASSWORD_VAR, "")
    return {
        f"ORG_GRADLE_PROJECT_{prefix}STORE_FILE": str(keystore),
        f"ORG_GRADLE_PROJECT_{prefix}STORE_PASSWORD": store_password,
        f"ORG_GRADLE_PROJECT_{prefix}KEY_ALIAS": environ.get(KEY_ALIAS_VAR, ""),
        # PKCS12 keystores (keytool's default) have one password for the store and the key.
        f"ORG_GRADLE_PROJECT_{prefix}KEY_PASSWORD": environ.get(KEY_PASSWORD_VAR) or store_password,
    }


def child_env(environ: Mapping[str, str], plan: BuildPlan, signing: Mapping[str, str]) -> dict[str, str]:
    """The build's environment: ours without the raw signing secrets, plus the Gradle properties."""
    env = {k: v for k, v in environ.items() if k not in SIGNING_VARS}
    env.update(plan.property_env)
    env.update(signing)
    return env


# ---- signing secrets -------------------------------------------------------------------------------

@contextlib.contextmanager
def keystore_file(environ: Mapping[str, str], console: Console) -> Iterator[Path | None]:
    """The base64 keystore secret as a file only its owner can read, deleted afterwards (None if unset)."""
    encoded = environ.get(KEYSTORE_VAR, "")
    if not encoded.strip():
        console.warning(f"{KEYSTORE_VAR} is not set: the release is signed by the project's own signing config "
                        "(not the production key)", title="no release keystore")
        yield None
        return
    missing = [name for name in (STORE_PASSWORD_VAR, KEY_ALIAS_VAR) if not environ.get(name)]
    if missing:
        raise ConfigError(f"{KEYSTORE_VAR} is set but {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not",
                          fix="set the keystore password and key alias secrets too (ANDROID_KEY_PASSWORD defaults "
                              "to the keystore password)")
    try:
        data = base64.b64decode("".join(encoded.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{KEYSTORE_VAR} is not valid base64",
                          fix="store the keystore as `base64 -w0 release.keystore` in the secret") from None
    remove_dead_keystores(Path(tempfile.gettempdir()), console)
    # mode 0700; the name says whose it is, so that the next run can remove it if this one is killed
    folder = Path(tempfile.mkdtemp(prefix=f"{KEYSTORE_FOLDER}{os.getpid()}-{_start_ticks(os.getpid())}-"))
    try:
        path = folder / "release.keystore"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


KEYSTORE_FOLDER = "prodval-keystore-"


def _start_ticks(pid: int) -> int | None:
    """When the process started (/proc/<pid>/stat), so a recycled pid is not taken for the owner."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[19]) if len(fields) > 19 and fields[0] != "Z" else None


def remove_dead_keystores(folder: Path, console: Console) -> list[Path]:
    """Remove the decoded keystores that killed builds left in `folder` (their owner is gone)."""
    removed = []
    for path in folder.glob(f"{KEYSTORE_FOLDER}*-*-*"):
        pid, _, rest = path.name[len(KEYSTORE_FOLDER):].partition("-")
        ticks = rest.partition("-")[0]
        if not pid.isdigit() or not path.is_dir():
            continue
        alive = _start_ticks(int(pid))
        if alive is not None and (ticks == "None" or str(alive) == ticks):
            continue  # its build still runs
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
        console.warning(f"removed the decoded keystore a killed build left in {path}", title="keystore left behind")
    return removed


# ---- finding the output ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Output:
    path: Path
    abi: str  # "" for a single or universal APK


def _split_variant(variant: str) -> tuple[str, str]:
    """productionRelease -> ("production", "release"); release -> ("", "release")."""
    parts = re.split(r"(?=[A-Z])", variant)
    build_type = parts[-1]
    flavor = "".join(parts[:-1])
    return flavor, build_type[:1].lower() + build_type[1:]


def _from_metadata(apk_root: Path, variant: str) -> tuple[list[Output], list[str]]:
    """AGP's output-metadata.json beside the APKs: (outputs of `variant`, every variant it lists)."""
    outputs: list[Output] = []
    variants: list[str] = []
    for meta in sorted(apk_root.rglob("output-metadata.json")):
        try:
            data = json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        name = str(data.get("variantName", ""))
        variants.append(name)
        if name != variant:
            continue
        for element in data.get("elements", []):
            abi = next((str(f.get("value", "")) for f in element.get("filters", []) if f.get("filterType") == "ABI"), "")
            outputs.append(Output(meta.parent / str(element.get("outputFile", "")), abi))
    return outputs, variants


# The ABIs an ABI split can name (AGP writes app-<abi>-<buildType>.apk); "universal" is not one.
_ABI_IN_NAME = re.compile(r"-(armeabi-v7a|arm64-v8a|x86_64|x86|riscv64)-")


def _from_folder(apk_root: Path, variant: str) -> list[Output]:
    """Without metadata: the APKs in apk/<flavor>/<buildType>/, their ABI read from the file name."""
    flavor, build_type = _split_variant(variant)
    folder = apk_root / flavor / build_type if flavor else apk_root / build_type
    found = []
    for path in sorted(folder.glob("*.apk")):
        match = _ABI_IN_NAME.search(path.name)
        found.append(Output(path, match.group(1) if match else ""))
    return found


def find_output(settings: BuildSettings, plan: BuildPlan) -> Output:
    """The APK the build wrote for the configured variant (and ABI); ApkError saying what to change."""
    if settings.output:
        return Output(_configured_output(settings.output), "")
    outputs, variants = _from_metadata(plan.apk_root, settings.variant)
    if not outputs:
        outputs = _from_folder(plan.apk_root, settings.variant)
    outputs = [o for o in outputs if o.path.is_file()]
    if not outputs:
        bundles = sorted(plan.bundle_root.rglob("*.aab")) if plan.bundle_root.is_dir() else []
        if bundles:
            raise ApkError(f"the build wrote an Android App Bundle ({relative_display(bundles[0])}), not an APK",
                           fix=AAB_FIX)
        others = sorted({v for v in variants if v})
        if not others and plan.apk_root.is_dir():
            others = sorted({relative_display(p.parent) for p in plan.apk_root.rglob("*.apk")})
        seen = f"; the build has outputs for: {', '.join(others)}" if others else ""
        raise ApkError(f"no APK for variant '{settings.variant}' under {relative_display(plan.apk_root)}{seen}",
                       fix="set build.variant to the variant you build (e.g. productionRelease with flavors), "
                           "or build.command and build.output for another build tool")
    chosen = _choose(outputs, settings.abi)
    if chosen.path.name.endswith("-unsigned.apk"):
        raise ApkError(f"the build wrote an unsigned APK ({relative_display(chosen.path)}): no signing config "
                       f"applies to variant '{settings.variant}'", fix=UNSIGNED_FIX)
    return chosen


def _choose(outputs: Sequence[Output], abi: str) -> Output:
    exact = [o for o in outputs if abi and o.abi == abi]
    universal = [o for o in outputs if not o.abi]
    if exact or universal:
        return (exact or universal)[0]
    names = ", ".join(f"{o.path.name} ({o.abi})" for o in outputs)
    raise ApkError(f"the build split the APK by ABI and none is for '{abi}': {names}",
                   fix="set build.abi to the ABI of the device you validate on (an x86_64 emulator: x86_64), "
                       "or enable isUniversalApk in the splits block")


def _configured_output(pattern: str) -> Path:
    matches = [Path(p) for p in glob.glob(pattern) if Path(p).is_file()]
    path = max(matches, key=lambda p: p.stat().st_mtime) if matches else None  # the newest, for a glob
    if path is None:
        raise ApkError(f"the build command succeeded but wrote nothing at build.output ({pattern})",
                       fix="set build.output to the file your command writes (e.g. eas build's --output)")
    if path.suffix == ".aab":
        raise ApkError(f"the build wrote an Android App Bundle ({path}), not an APK", fix=AAB_FIX)
    return path


_COMPILER_ERROR = re.compile(r"^(?:e: |error: |ERROR: |\S+\.(?:kt|java|kts):\d+: error)")


def build_errors(*logs: Path, limit: int = 10) -> list[str]:
    """The compiler errors in a build's logs (Kotlin `e: ...`, javac `X.java:12: error`, AAPT `ERROR:`),
    read line by line: they sit in the middle of a long build's output."""
    found: list[str] = []
    for log in logs:
        with open(log, encoding="utf-8", errors="replace") as fh:
            found += [line.rstrip() for line in fh if _COMPILER_ERROR.match(line)][:limit - len(found)]
    return found


# ---- what a failed Gradle build said ---------------------------------------------------------------
# Gradle ends a failed build with `FAILURE: Build failed with an exception.` (or `Build completed with N
# failures.` and numbered `N: Task failed with an exception.` blocks), each with a `* What went wrong:`
# section; the wrapper, when it cannot download Gradle, prints only `Downloading <url>` and a Java stack
# trace (`Exception in thread "main" java.net.UnknownHostException: services.gradle.org`, `\tat` frames).
# The tail of that output is mostly frames: the cause is read from the whole logs instead.

_WHAT_WENT_WRONG = "* What went wrong:"
_SECTION_END = re.compile(r"^(?:\* \w[\w ]*:|={10,}|BUILD FAILED|FAILURE: |\d+: Task failed)")
_EXCEPTION = re.compile(r"^(?:Exception in thread \"[^\"]*\" |Caused by: )?((?:[a-z_$][\w$]*\.)+[A-Z][\w$]*"
                        r"(?:Exception|Error)\b(?::.*)?)$")
_FRAME = re.compile(r"^\s+(?:at \S|\.\.\. \d+ more)")
_DOWNLOADING = re.compile(r"^Downloading (https?://\S+)")  # the wrapper, before it downloads Gradle
_FETCHING = re.compile(r"Could not (?:GET|HEAD|get resource) '(https?://[^']+)'")  # Gradle, for a dependency
_UNKNOWN_HOST = re.compile(r"java\.net\.UnknownHostException: ([\w.-]+)")
# How the JVM and Gradle say that a host could not be reached (in an exception or in "What went wrong").
_UNREACHABLE = re.compile(r"UnknownHostException|ConnectException|NoRouteToHostException|SocketTimeoutException|"
                          r"Name or service not known|Temporary failure in name resolution|No such host is known|"
                          r"nodename nor servname|Network is unreachable|Connection refused|[Cc]onnect(?:ion)? timed out|"
                          r"failed to respond")
MAX_WHAT_WENT_WRONG = 5  # blocks kept (Gradle numbers each failure of a build)
MAX_BLOCK_LINES = 12


@dataclass(frozen=True)
class GradleFailure:
    """What a failed build printed about why: Gradle's `* What went wrong:` blocks, the first exception
    line, and, when the build could not reach a server, which one and what needed it."""

    what_went_wrong: tuple[str, ...] = ()
    failures: int = 0  # Gradle's count (`Build completed with N failures.`); 0 when it printed none
    exception: str = ""
    unreachable: bool = False  # the build could not reach a server the output names
    host: str = ""  # that server
    wrapper: bool = False  # the Gradle wrapper was downloading Gradle itself

    def cause(self) -> str:
        """The failure in plain words, for the error's first line (and so the headline of every alert)."""
        if self.unreachable:
            why = " (the Gradle wrapper downloads Gradle from there)" if self.wrapper else \
                " (Gradle downloads the build's plugins and dependencies from there)"
            return f"it needs network access to {self.host}{why}"
        if self.what_went_wrong:
            first = self.what_went_wrong[0].splitlines()[0]
            more = max(self.failures, len(self.what_went_wrong)) - 1
            return first + (f" (and {more} more failure{'s' if more > 1 else ''})" if more > 0 else "")
        return self.exception

    def fix(self, logs: str) -> str:
        if self.unreachable:
            cache = "~/.gradle/wrapper" if self.wrapper else "~/.gradle/caches"
            return (f"allow the build to reach {self.host}, or cache {cache} between runs "
                    f"(actions/cache, or gradle/actions/setup-gradle); its whole output is in {logs}/")
        return f"fix the build (its whole output is in {logs}/), then run it again"

    def describe(self) -> list[str]:
        """The error's lines about the cause (indented like the rest of a command's failure)."""
        lines = []
        if self.what_went_wrong:
            count = max(self.failures, len(self.what_went_wrong))
            numbered = count > 1
            lines.append(f"  what went wrong ({count} failures):" if numbered else "  what went wrong:")
            for number, block in enumerate(self.what_went_wrong, 1):
                prefix = f"{number}: " if numbered else ""
                for index, line in enumerate(block.splitlines()):
                    lines.append("    " + (prefix if index == 0 else " " * len(prefix)) + line)
            if count > len(self.what_went_wrong):
                lines.append(f"    ...and {count - len(self.what_went_wrong)} more")
        if self.exception:
            lines.append(f"  exception: {self.exception}")
        return lines


def gradle_failure(*logs: Path) -> GradleFailure:
    """Read a failed build's logs (stdout, stderr) line by line for its cause: they can be large."""
    blocks: list[list[str]] = []
    exceptions: list[str] = []
    in_block = keeping = False
    failures, unreachable, wrapper = 0, False, False
    downloading = fetching = ""
    for log in logs:
        in_block = False  # a block cut off at the end of one log does not swallow the next log's lines
        with open(log, encoding="utf-8", errors="replace") as fh:
            for raw in fh:
                line = raw.rstrip()
                if line == _WHAT_WENT_WRONG:
                    in_block, keeping = True, len(blocks) < MAX_WHAT_WENT_WRONG
                    if keeping:
                        blocks.append([])
                    continue
                if in_block and _SECTION_END.match(line):
                    in_block = False
                if in_block:
                    if keeping and len(blocks[-1]) < MAX_BLOCK_LINES:
                        blocks[-1].append(line)
                    unreachable = unreachable or bool(_UNREACHABLE.search(line))
                    fetched = _FETCHING.search(line)
                    fetching = fetching or (urlsplit(fetched.group(1)).hostname or "" if fetched else "")
                    continue
                if counted := re.match(r"^FAILURE: Build completed with (\d+) failures?\.", line):
                    failures = int(counted.group(1))
                if download := _DOWNLOADING.match(line):
                    downloading = urlsplit(download.group(1)).hostname or ""
                if not _FRAME.match(line) and (exception := _EXCEPTION.match(line)):
                    if len(exceptions) < 20:
                        exceptions.append(exception.group(1))
                    unreachable = unreachable or bool(_UNREACHABLE.search(line))
                wrapper = wrapper or "org.gradle.wrapper." in line
    named = next((m.group(1) for e in exceptions if (m := _UNKNOWN_HOST.search(e))), "")
    wrapper = wrapper or (bool(downloading) and not blocks)  # no Gradle report: Gradle itself never ran
    host = named or (downloading if wrapper else fetching)
    unreachable = unreachable and bool(host)  # "Connection refused" alone may be anything (a daemon, a device)
    texts = tuple(text for text in ("\n".join(block).strip("\n") for block in blocks) if text)
    return GradleFailure(what_went_wrong=texts, failures=failures, exception=exceptions[0] if exceptions else "",
                         unreachable=unreachable, host=host if unreachable else "", wrapper=wrapper and unreachable)


def collapse_frames(text: str) -> str:
    """A stack trace's `\tat ...` frames as one line per run: a failure's tail shows the exception, not
    the 15 frames under it."""
    out: list[str] = []
    run = 0
    for line in text.splitlines():
        if _FRAME.match(line):
            run += 1
            continue
        if run:
            out.append(f"\t... {run} stack frame{'s' if run > 1 else ''}")
            run = 0
        out.append(line)
    if run:
        out.append(f"\t... {run} stack frame{'s' if run > 1 else ''}")
    return "\n".join(out)


# ---- the build stage -------------------------------------------------------------------------------

def resolve_executable(plan: BuildPlan) -> Path:
    first = plan.argv[0]
    if os.sep in first:
        # absolute: from android/ the project folder is '.', and Path('.') / './gradlew' is 'gradlew' (a PATH lookup)
        candidate = Path(first) if Path(first).is_absolute() else (plan.cwd / first).absolute()
        return find_tool(Path(first).name, [(relative_display(candidate), candidate)],
                         GRADLEW_HINT if plan.gradle else "set build.command to an executable that exists")
    return find_tool(first, [("PATH", first)], GRADLEW_HINT if plan.gradle else f"install {first}, or set build.command")


def run_build(settings: BuildSettings, environ: Mapping[str, str], console: Console,
              deployed_sha: str | None = None) -> RunRecord:
    """Build, find, inspect, copy and record the APK in a new run record; the record (stage `build`: pass,
    or error and the verdict `error`)."""
    redact = Redactor.from_env(environ, dict(settings.properties), settings.secret_env)
    console.redact = redact
    writer = RecordWriter(settings.results_dir, redact)
    with stage(writer, STAGE, console, environ, new=True, deployed_sha=deployed_sha, title="build-apk",
               decide=lambda _, entry: Verdict.ERROR if entry.error else None) as record:
        copy = settings.results_dir / settings.apk_name
        copy.unlink(missing_ok=True)  # never leave the previous build's APK where validate would take it
        info = _build(settings, environ, console, record, copy)
        console.step(f"Built {info.package} {info.version_name} ({info.version_code}): {relative_display(copy)}")
        console.set_outputs({"apk-path": str(copy), "apk-package": info.package})
    return record


def build_failed(shown: str, returncode: int, stdout: str, stderr: str, logs: tuple[Path, Path], folder: str,
                 redact: Callable[[str], str]) -> CommandFailed:
    """The build's error: the cause first (Gradle's `* What went wrong:`, the exception, a network cause said
    plainly), then the compiler errors, the command and the tails of its output, then the fix.

    Its first line is the run's headline when the build fails ("Validation could not run: the build
    failed: ..."), so it names the cause, not the command."""
    said = gradle_failure(*logs)  # the whole logs, not the kept head and tail
    failure = CommandFailed(shown, returncode, collapse_frames(stdout), collapse_frames(stderr),
                            what="the build failed", stage=STAGE, fix=redact(said.fix(folder)))
    command = failure.message  # "the build failed: `cmd` exited with code N", then the tails
    cause = said.cause()
    lines = [f"the build failed: {cause}" if cause else command.splitlines()[0], *said.describe()]
    reasons = build_errors(*logs)
    if reasons:  # compiler errors come long before the tail of Gradle's report
        lines += ["  errors:", *(f"    {line}" for line in reasons)]
    if cause:
        lines.append(f"  command: {command.splitlines()[0].removeprefix('the build failed: ')}")
    failure.message = redact("\n".join([*lines, *command.splitlines()[1:]]))
    return failure


def _build(settings: BuildSettings, environ: Mapping[str, str], console: Console, record: RunRecord,
           copy: Path) -> ApkInfo:
    plan = plan_build(settings)
    if not plan.cwd.is_dir():
        raise ConfigError(f"the build folder '{plan.cwd}' does not exist",
                          fix="set build.project_dir to the Android project (default android)")
    executable = resolve_executable(plan)
    argv = [str(executable.resolve()), *plan.argv[1:]]
    logs = settings.results_dir / LOG_DIR
    logs.mkdir(parents=True, exist_ok=True)
    with keystore_file(environ, console) as keystore:
        signing = signing_properties(settings.signing_property_prefix, keystore, environ) if keystore else {}
        env = child_env(environ, plan, signing)
        shown = display(plan.argv)
        console.step(f"Building the production APK in {relative_display(plan.cwd)}")
        with console.group(f"build · {shown}"):
            console.command(shown)
            built = stream(argv, env=env, timeout=settings.timeout, stdout_path=logs / "stdout.log",
                           stderr_path=logs / "stderr.log", on_line=console.line, redact=console.redact,
                           cwd=plan.cwd)
    if built.returncode != 0 or built.timed_out:
        raise build_failed(console.redact(shown), built.returncode, built.stdout.text,
                           built.stderr.text if not built.timed_out else f"timed out after {settings.timeout:g}s",
                           (built.stdout.path, built.stderr.path), relative_display(logs), console.redact)
    output = find_output(settings, plan)
    info = inspect_apk(output.path)
    if not info.signed:
        raise ApkError(f"{relative_display(output.path)} is not signed (no v1, v2 or v3 signature)", fix=UNSIGNED_FIX)
    shutil.copyfile(output.path, copy)
    record.apk = {
        **info.to_record(),
        "file": copy.name,
        "sourcePath": relative_display(output.path),
        "variant": settings.variant,
        "abi": output.abi,
    }
    record.environment.apkBuildPath = relative_display(copy)
    return info
