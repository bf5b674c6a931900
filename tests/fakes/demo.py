"""The demo (`nox -s demo`): the whole pipeline on the SIMULATED toolchain of this folder, no device needed.

    python tests/fakes/demo.py [--work DIR] [-- extra arguments for `invoke validate`]

Run from the project root by an interpreter that has the `prodval` package (and so `invoke`). A fake
Android SDK (adb, emulator, avdmanager, sdkmanager, a system image) is laid out under DIR/sdk with no
device connected, so `invoke validate --devices 2` boots two (fake) emulators and runs the flows of
`.maestro/` with the fake maestro, scripted by `demo-scenario.json` as a realistic bad day:

- `add-exercise-and-see-it-in-list.yml` fails for real ("Save" is gone): `failed`, with a screenshot;
- `launch-and-sign-in-anonymously.yml` fails once ("No exercises yet" came too late), then passes: `flaky`;
- `delete-exercise.yml` hits an infrastructure error (Maestro's driver does not start), is retried on the
  other emulator and hits it again: `error`;
- `list-survives-restart.yml` passes.

`PRODVAL_SIMULATED=1` marks the run record (`job.simulated`), so the console, summary.md, report.html,
junit.xml and the alerts all say SIMULATED. `invoke notify --dry-run --on always` then prints the Slack
message and the email it would send (to made-up addresses, never sent). The verdict is `fail` (exit 1):
this script says so and exits 0 when that is what it got, and exits non-zero on any other verdict.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

FAKES = Path(__file__).resolve().parent
ROOT = FAKES.parent.parent
SCENARIO = FAKES / "demo-scenario.json"
EXPECTED = ("fail", 1)  # the verdict the scenario scripts, and its exit code
VERDICTS = {0: "pass", 1: "fail", 2: "error"}
SDK_PACKAGES = ("platform-tools", "emulator", "cmdline-tools;latest", "system-images;android-34;google_apis;x86_64")


# Left out of the demo's environment: a simulation never writes to a real Actions job's outputs or summary,
# never names a real alert channel (even in a dry run), and keeps its scenario whatever the shell's settings.
FOREIGN = ("GITHUB_", "INVOKE_", "SLACK_", "SMTP_", "ALERT_EMAIL_", "PAGERDUTY_", "MAESTRO_", "FAKE_", "VALIDATION_")


def demo_env(work: Path, environ: dict[str, str]) -> dict[str, str]:
    """The environment of the demo's `invoke` command: the fakes, the fake SDK, made-up alert channels."""
    return {
        **{name: value for name, value in environ.items() if not name.startswith(FOREIGN)},
        "PATH": f"{FAKES}{os.pathsep}{environ.get('PATH', '')}",  # the fake maestro
        "ANDROID_HOME": str(work / "sdk"),
        "ANDROID_AVD_HOME": str(work / "avd"),
        "FAKE_ADB_STATE": str(work / "fake-adb-state.json"),
        "FAKE_MAESTRO_STATE_DIR": str(work),
        "FAKE_MAESTRO_SCENARIO": str(SCENARIO),
        "PRODVAL_SIMULATED": "1",
        "INVOKE_VALIDATION_RESULTS_DIR": str(work / "validation"),
        "INVOKE_HISTORY_PATH": str(work / "history.sqlite"),  # a simulated run never joins the real history
        "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T000/B000/simulated-demo-secret",
        "SMTP_HOST": "smtp.example.invalid",
        "ALERT_EMAIL_FROM": "prodval@example.invalid",
        "ALERT_EMAIL_TO": "mobile-team@example.invalid",
    }


def prepare(work: Path) -> None:
    """A fresh work folder with the fake SDK and no device connected."""
    sys.path.insert(0, str(FAKES))
    import _fakesdk  # the fakes' own module, importable once FAKES is on sys.path

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for package in SDK_PACKAGES:
        _fakesdk.install_package(str(work / "sdk"), package)
    (work / "fake-adb-state.json").write_text(json.dumps({"devices": {}}))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "demo", help="default: build/demo")
    parser.add_argument("validate_args", nargs="*", help="extra arguments for `invoke validate`")
    args = parser.parse_args(argv)
    work = args.work.resolve()
    prepare(work)
    print("SIMULATED toolchain: tests/fakes stands in for the Android SDK, two emulators and Maestro;\n"
          f"the scenario ({SCENARIO.relative_to(ROOT)}) scripts one real failure, one flaky flow and one "
          "infrastructure error.", flush=True)
    invoke = [sys.executable, "-m", "invoke"]
    command = [*invoke, "validate", "--devices", "2", *args.validate_args, "notify", "--dry-run", "--on", "always"]
    code = subprocess.run(command, cwd=ROOT, env=demo_env(work, dict(os.environ)), check=False).returncode
    verdict = VERDICTS.get(code, "a crash")
    results = work / "validation"
    shown = results.relative_to(ROOT) if results.is_relative_to(ROOT) else results
    print(f"\nRun record: {shown / 'results.json'}; open {shown / 'report.html'}")
    if (verdict, code) == EXPECTED:
        print(f"The demo's verdict is {verdict} (exit {code}), as scripted: the real failure fails the run, "
              "the flaky flow passes with a warning, the infrastructure error is told apart from both.")
        return 0
    print(f"The demo's verdict is {verdict} (exit {code}); the scenario scripts {EXPECTED[0]} (exit {EXPECTED[1]}).",
          file=sys.stderr)
    return code or 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
