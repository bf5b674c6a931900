"""What `validate` checks of the APK it tests, before it runs anything: which APK (the one `build-apk`
recorded, or --apk), that it is there, and that every flow's appId is its package.

The build stage that makes the APK is `apk.py`; reading an APK's identity from its bytes is `apkfile.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .apkfile import ApkInfo, inspect_apk, require_apk
from .console import relative_display
from .errors import ConfigError
from .flows import Flow
from .outcomes import Verdict
from .results import BUILD_STAGE, RunRecord


def recorded_apk(record: RunRecord | None, results_dir: Path) -> Path | None:
    """The APK build-apk recorded in this results folder's record, if its build stage passed."""
    if record is None or not record.apk or not record.apk.get("file"):
        return None
    build = record.stages.get(BUILD_STAGE)
    if build is None or build.outcome != Verdict.PASS:
        return None
    path = results_dir / str(record.apk["file"])
    if not path.is_file():
        raise ConfigError(f"the run record names the APK build-apk built ({path}) but the file is gone",
                          fix="run `invoke build-apk` again, or pass --apk PATH")
    return path


def app_id_mismatches(package: str, flows: Sequence[Flow]) -> list[str]:
    """One line per flow whose appId is not the APK's package name."""
    problems = []
    for flow in flows:
        if flow.app_id == package or (not flow.app_id and flow.app_id_source):
            continue  # (an appId expression known only at run time is not checked)
        hint = ""
        if flow.app_id.startswith(package + ".") or package.startswith(flow.app_id + "."):
            hint = " (an applicationIdSuffix such as .debug, or a flavor's suffix?)"
        problems.append(f"{relative_display(flow.path)}: appId {flow.app_id}, but the APK's package is {package}{hint}")
    return problems


def check_flows_match_apk(apk: Path, flows: Sequence[Flow]) -> ApkInfo:
    """Read the APK and require every flow's appId to be its package; ConfigError listing every mismatch."""
    require_apk(apk)
    info = inspect_apk(apk)
    problems = app_id_mismatches(info.package, flows)
    if problems:
        count = len(problems)
        raise ConfigError(
            f"{count} flow{'s' if count > 1 else ''} would test another app than {apk} ({info.package}):\n"
            + "\n".join(f"  {p}" for p in problems),
            fix=f"set each flow's appId to {info.package}, or build and pass the variant the flows test",
        )
    return info
