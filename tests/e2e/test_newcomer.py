"""A newcomer's first commands: the README's demo and test commands on a stock Python, and what the demo shows.

- tools/bootstrap.py runs nox from the project's .venv, so Debian's and Ubuntu's own python3 (PEP 668)
  work; without ensurepip (Debian's python3-venv) it says exactly what to install.
- The demo (tests/fakes/demo.py, `nox -s demo`) plays a mixed scenario on two fake emulators (a real
  failure with a screenshot, a flaky flow, an infrastructure error retried on the other device) and marks
  every artifact and message SIMULATED.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from prodval.results import Job, RunRecord, headline, job_from_env, summary_markdown

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "tests" / "fakes" / "demo.py"
BOOTSTRAP = REPO / "tools" / "bootstrap.py"
SYSTEM_PYTHON = Path("/usr/bin/python3")
_IN_CI = bool(os.environ.get("CI"))  # read at import: conftest's guard clears CI for each test


def run_demo(work: Path, *validate_args: str) -> subprocess.CompletedProcess[str]:
    """The demo as `nox -s demo` runs it (the session's interpreter has prodval), into `work`."""
    command = [sys.executable, str(DEMO), "--work", str(work), "--", *validate_args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    work = tmp_path_factory.mktemp("demo")
    return run_demo(work), work / "validation"


def test_the_demo_shows_a_real_failure_a_flaky_flow_and_an_infrastructure_error(
        demo: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    run, results = demo
    assert run.returncode == 0, run.stdout + run.stderr
    assert "The demo's verdict is fail (exit 1), as scripted" in run.stdout
    record = json.loads((results / "results.json").read_text())
    assert record["verdict"] == "fail"
    status = {f["flowFileName"]: f for f in record["flows"]}
    assert {name: f["status"] for name, f in status.items()} == {
        "add-exercise-and-see-it-in-list.yml": "failed",
        "launch-and-sign-in-anonymously.yml": "flaky",
        "delete-exercise.yml": "error",
        "list-survives-restart.yml": "passed",
    }
    assert len(record["devices"]) == 2
    # the infrastructure error is retried on the other emulator
    infra = status["delete-exercise.yml"]
    assert [a["status"] for a in infra["attempts"]] == ["error", "error"]
    assert len({a["device"] for a in infra["attempts"]}) == 2
    assert "driver did not start" in infra["errorSummary"]
    # the real failure has its failure screenshot, which the report embeds
    failed = status["add-exercise-and-see-it-in-list.yml"]
    shots = [p for p in failed["artifactPaths"] if p.endswith(".png")]
    assert shots and all((results / p).is_file() for p in shots)
    assert "Element not found: Text matching regex: Save" in failed["errorSummary"]
    page = (results / "report.html").read_text()
    assert "data:image/png;base64," in page or any(Path(p).name in page for p in shots)
    # and the screen recording of each of its attempts, which the report card plays (the README says so)
    assert all(a["video"] and (results / a["video"]).is_file() for a in failed["attempts"]), failed["attempts"]
    assert f'<video controls preload="metadata" src="{failed["attempts"][0]["video"]}">' in page
    # the console tells the three apart
    out = run.stdout
    assert "Verdict: FAIL: SIMULATED: 1 of 4 flows failed against production" in out
    summary = (results / "summary.md").read_text()
    for label in ("failed", "flaky", "error"):
        assert re.search(rf"\| `[^`]+` \| {label} \|", summary), (label, summary)


def test_every_artifact_and_message_of_the_demo_says_simulated(
        demo: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    run, results = demo
    record = json.loads((results / "results.json").read_text())
    assert record["job"]["simulated"] is True
    summary = (results / "summary.md").read_text()
    assert summary.startswith("## SIMULATED: Production Validation: fail")
    assert "**SIMULATED: 1 of 4 flows failed against production**" in summary
    page = (results / "report.html").read_text()
    assert "<title>SIMULATED: Production Validation: fail" in page
    assert "Notifying: SIMULATED: verdict FAIL" in run.stdout + run.stderr
    assert '<p class="headline">SIMULATED: 1 of 4 flows failed against production</p>' in page
    suite = ET.parse(results / "junit.xml").getroot().find("testsuite")
    assert suite is not None
    assert suite.find("properties/property[@name='simulated']") is not None
    # the dry-run Slack message (its JSON) and the email
    slack = run.stdout[run.stdout.index("dry run: slack would get"):run.stdout.index("dry run: email would get")]
    assert '"text": "[production-validation] FAIL: SIMULATED: 1 of 4 flows failed against production"' in slack
    assert ":x: *SIMULATED: 1 of 4 flows failed against production*" in slack
    email = run.stdout[run.stdout.index("dry run: email would get"):]
    assert "Subject: [production-validation] FAIL: SIMULATED: 1 of 4 flows failed against production" in email
    assert "delete-exercise.yml: infrastructure error (2 attempts)" in email
    assert "launch-and-sign-in-anonymously.yml: flaky (2 attempts): Element not found" in email
    assert "simulated-demo-secret" not in run.stdout + run.stderr  # the made-up webhook is still masked


def test_the_demo_fails_on_a_verdict_it_did_not_script(tmp_path: Path) -> None:
    """An unscripted verdict is a broken demo, not "as scripted": here a flow that passes alone."""
    run = run_demo(tmp_path, "--flows", ".maestro/list-survives-restart.yml")
    assert run.returncode != 0
    assert "The demo's verdict is pass (exit 0); the scenario scripts fail (exit 1)" in run.stderr
    assert "as scripted" not in run.stdout


def test_only_a_simulated_run_is_marked() -> None:
    real = RunRecord(runId="r1", job=job_from_env({}), verdict="pass")
    assert real.job.simulated is False and not headline(real).startswith("SIMULATED")
    demo = RunRecord(runId="r1", job=job_from_env({"PRODVAL_SIMULATED": "1"}), verdict="pass")
    assert headline(demo) == "SIMULATED: All 0 flows passed against production"
    assert "SIMULATED" in summary_markdown(demo)
    # a record written before the field existed reads as not simulated
    old = RunRecord.from_json({"runId": "r0", "job": {"jobId": "j"}})
    assert old.job == Job(jobId="j")


# tools/bootstrap.py ------------------------------------------------------------------------------------
def bootstrap_copy(tmp_path: Path) -> Path:
    """A project folder holding only what tools/bootstrap.py reads (its ROOT is the folder above it)."""
    (tmp_path / "tools").mkdir()
    shutil.copy(BOOTSTRAP, tmp_path / "tools" / "bootstrap.py")
    shutil.copy(REPO / "tools" / "pyproject.toml", tmp_path / "tools" / "pyproject.toml")
    return tmp_path


def test_bootstrap_says_which_package_to_install_when_ensurepip_is_missing(tmp_path: Path) -> None:
    """Debian's python3 without python3-venv has no ensurepip: one message naming the package, exit 2."""
    root = bootstrap_copy(tmp_path)
    hide = ("import runpy, sys; sys.modules['ensurepip'] = None; sys.argv = ['bootstrap.py', '-s', 'demo']; "
            f"runpy.run_path({str(root / 'tools' / 'bootstrap.py')!r}, run_name='__main__')")
    run = subprocess.run([sys.executable, "-c", hide], capture_output=True, text=True, timeout=120, check=False)
    minor = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert run.returncode == 2, run.stdout + run.stderr
    assert "its `ensurepip` module is missing" in run.stderr
    assert f"sudo apt install python3-venv (python{minor}-venv for this Python)" in run.stderr
    assert not (root / ".venv").exists()


def project_copy(destination: Path) -> Path:
    """A fresh copy of the project as a clone would give it (tracked and new files, nothing git-ignored)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    return destination


@pytest.mark.slow
def test_the_readme_demo_command_works_with_the_system_python(tmp_path: Path) -> None:
    """Debian's/Ubuntu's own /usr/bin/python3 (PEP 668: no pip install into it), in a fresh copy."""
    venv_ok = SYSTEM_PYTHON.exists() and subprocess.run(
        [str(SYSTEM_PYTHON), "-c", "import ensurepip"], capture_output=True, check=False).returncode == 0
    if not venv_ok:
        assert not _IN_CI, "CI needs /usr/bin/python3 with python3-venv (.ci/run installs it)"
        pytest.skip("/usr/bin/python3 cannot make a virtual environment (apt install python3-venv)")
    root = project_copy(tmp_path / "project")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "NOX", "PYTHON"))}
    run = subprocess.run([str(SYSTEM_PYTHON), "tools/bootstrap.py", "-s", "demo"], cwd=root, env=env,
                         capture_output=True, text=True, timeout=1200, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "The demo's verdict is fail (exit 1), as scripted" in run.stdout
    assert "creating the project's virtual environment .venv/" in run.stdout
    assert json.loads((root / "build/demo/validation/results.json").read_text())["job"]["simulated"] is True
    # the second time, nothing is installed again; `--venv` leaves invoke ready for "Running it for real"
    again = subprocess.run([str(SYSTEM_PYTHON), "tools/bootstrap.py", "--venv"], cwd=root, env=env,
                           capture_output=True, text=True, timeout=600, check=False)
    assert again.returncode == 0, again.stderr
    assert "installing" not in again.stdout and "ready" in again.stdout
    tasks = subprocess.run([str(root / ".venv/bin/invoke"), "--list"], cwd=root, env=env,
                           capture_output=True, text=True, timeout=120, check=False)
    assert tasks.returncode == 0 and "validate" in tasks.stdout, tasks.stderr


# the README and docs/ ------------------------------------------------------------------------------------
def test_the_readme_is_short_and_every_link_in_it_and_in_docs_resolves() -> None:
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 160, "the README is what a newcomer needs first; reference goes to docs/"
    for heading in ("## Try it: two commands", "## Running it for real", "## The workflow in one paragraph",
                    "## Where to read more"):
        assert heading in readme
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    assert len(pages) >= 10
    linked = set()
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue
            path = (page.parent / target).resolve()
            assert path.exists(), f"{page.relative_to(REPO)} links to {target}, which does not exist"
            linked.add(path)
    assert set(pages[1:]) <= linked, "every docs/ page is linked from somewhere"


def test_the_demo_keeps_out_of_a_real_actions_job_and_real_alert_channels(tmp_path: Path) -> None:
    """Run inside GitHub Actions (as CI runs it), the demo writes nothing to the job's outputs or summary,
    and a real channel configured in the shell never appears, even in the dry run."""
    sys.path.insert(0, str(DEMO.parent))
    try:
        import demo as demo_module  # tests/fakes/demo.py
    finally:
        sys.path.remove(str(DEMO.parent))
    outputs, summary = tmp_path / "github_output", tmp_path / "step_summary"
    shell = {"PATH": os.environ["PATH"], "GITHUB_ACTIONS": "true", "GITHUB_OUTPUT": str(outputs),
             "GITHUB_STEP_SUMMARY": str(summary), "PAGERDUTY_ROUTING_KEY": "R" * 32,
             "INVOKE_VALIDATION_RETRIES": "0", "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/REAL"}
    env = demo_module.demo_env(tmp_path / "work", shell)
    assert not {"GITHUB_ACTIONS", "GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY", "PAGERDUTY_ROUTING_KEY",
                "INVOKE_VALIDATION_RETRIES"} & set(env)
    assert env["SLACK_WEBHOOK_URL"].endswith("/simulated-demo-secret") and env["PRODVAL_SIMULATED"] == "1"
    assert env["INVOKE_VALIDATION_RESULTS_DIR"] == str(tmp_path / "work" / "validation")


def test_bootstrap_repairs_a_venv_without_pip_and_names_a_failed_install(tmp_path: Path) -> None:
    """A .venv whose creation was interrupted before pip gets pip (nothing else touched); a pip install that
    fails is one message with what to check, exit 2, and no stamp (the next run tries again)."""
    root = bootstrap_copy(tmp_path)
    (root / "tools" / "pyproject.toml").write_text("[project\nthis is not TOML\n")  # pip refuses it at once
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / ".venv")], check=True, timeout=300)
    (root / ".venv" / "kept.txt").write_text("mine")
    run = subprocess.run([sys.executable, str(root / "tools" / "bootstrap.py"), "--venv"], capture_output=True,
                         text=True, timeout=600, check=False)
    assert "bootstrap: .venv/ has no pip; adding it" in run.stdout, run.stdout + run.stderr
    python = root / ".venv" / "bin" / "python"
    assert subprocess.run([str(python), "-m", "pip", "--version"], capture_output=True, check=False).returncode == 0
    assert (root / ".venv" / "kept.txt").read_text() == "mine"
    assert run.returncode == 2
    assert f"bootstrap: installing into {root / '.venv'} failed" in run.stderr
    assert "check the network or the package index" in run.stderr
    assert not (root / ".venv" / ".prodval-bootstrap").exists()
