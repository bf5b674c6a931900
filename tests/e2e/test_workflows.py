"""The GitHub workflows: what the production validation runs, how it gates, and how it is hardened.

actionlint and zizmor check syntax and security (`nox -s workflows`); these tests check our intent:
the chain, the upload, the gate, pins, permissions, secrets, concurrency. The `run:` scripts that
matter are executed with bash against fake `invoke` and `gh` executables.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".github" / "workflows"
PRODUCTION = WORKFLOWS / "production-validation.yml"
CI = WORKFLOWS / "ci.yml"
PREPARE = REPO / ".github" / "actions" / "prepare" / "action.yml"
SECRETS = (
    "SLACK_WEBHOOK_URL", "SMTP_HOST", "SMTP_PORT", "SMTP_USERNAME", "SMTP_PASSWORD", "ALERT_EMAIL_FROM",
    "ALERT_EMAIL_TO", "PAGERDUTY_ROUTING_KEY", "ANDROID_KEYSTORE_BASE64", "ANDROID_KEYSTORE_PASSWORD",
    "ANDROID_KEY_ALIAS", "ANDROID_KEY_PASSWORD", "GITHUB_TOKEN",
)
PINNED = re.compile(r"^\s*-?\s*uses:\s*([\w.-]+/[\w./-]+)@([0-9a-f]{40})\s+#\s*v\d+\.\d+\.\d+\s*$")


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def triggers(workflow: dict[str, Any]) -> dict[str, Any]:
    on: dict[str, Any] = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    return on


def walk(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every (path of keys, value) in a YAML tree."""
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, (*path, str(key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, (*path, str(index)))


@pytest.fixture(scope="module")
def production() -> dict[str, Any]:
    return load(PRODUCTION)


@pytest.fixture(scope="module")
def validate_job(production: dict[str, Any]) -> dict[str, Any]:
    job: dict[str, Any] = production["jobs"]["validate"]
    return job


def step(job: dict[str, Any], predicate: Any) -> tuple[int, dict[str, Any]]:
    found = [(i, s) for i, s in enumerate(job["steps"]) if predicate(s)]
    assert len(found) == 1, found
    return found[0]


def chain_step(job: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return step(job, lambda s: "invoke validate" in s.get("run", "") and "notify" in s.get("run", ""))


def build_step(job: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return step(job, lambda s: s.get("run", "").strip() == "exec invoke build-apk")


def failure_step(job: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return step(job, lambda s: s.get("name") == "Report a run that did not finish")


def run_script(script: str, tmp_path: Path, tools: dict[str, str], **env: str) -> subprocess.CompletedProcess[str]:
    """Run a workflow `run:` script as the runner does (bash -e -o pipefail) with fake tools on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    log = tmp_path / "calls.log"
    for name, exit_code in tools.items():
        fake = bin_dir / name
        fake.write_text(f'#!/bin/sh\necho "{name} $*" >> "{log}"\nexit {exit_code}\n')
        fake.chmod(0o755)
    summary = tmp_path / "summary.md"
    full_env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "GITHUB_STEP_SUMMARY": str(summary), **env}
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script], env=full_env,
                          capture_output=True, text=True, timeout=30)


# triggers ---------------------------------------------------------------------------------------------
def test_runs_after_a_successful_deployment_and_on_demand(production: dict[str, Any],
                                                           validate_job: dict[str, Any]) -> None:
    on = triggers(production)
    assert on["workflow_run"] == {"workflows": ["Terraform Deploy"], "types": ["completed"], "branches": ["main"]}
    # the trigger, and the scheduled run's lookup of the deployed commit (test_workflow_history.py: they agree)
    assert PRODUCTION.read_text().count("Terraform Deploy") == 2, "the deployment workflow's name is in two places"
    assert "github.event.workflow_run.conclusion == 'success'" in validate_job["if"]
    assert "github.event_name != 'workflow_run'" in validate_job["if"]  # dispatch and call still run
    assert "include-tags" in on["workflow_dispatch"]["inputs"]
    assert "include-tags" in on["workflow_call"]["inputs"]
    assert on["workflow_call"]["outputs"]["verdict"]["value"] == (
        "${{ jobs.validate.outputs.verdict || jobs.merge-and-notify.outputs.verdict }}")


def test_checks_out_the_deployed_commit(production: dict[str, Any]) -> None:
    # one definition for every job: after workflow_run, GITHUB_SHA is the default branch, not the deployment
    assert production["env"]["INVOKE_NOTIFY_DEPLOYED_SHA"] == "${{ github.event.workflow_run.head_sha || github.sha }}"
    for name, job in production["jobs"].items():
        for checkout in [s for s in job["steps"] if s.get("uses", "").startswith("actions/checkout@")]:
            assert checkout["with"]["ref"] == "${{ env.INVOKE_NOTIFY_DEPLOYED_SHA }}", name
            assert checkout["with"]["persist-credentials"] is False
    assert "head_sha" not in str(production["jobs"])  # nowhere else worked out again


# the job ----------------------------------------------------------------------------------------------
def test_one_job_prepares_the_runner_then_chains_build_validate_notify(validate_job: dict[str, Any]) -> None:
    assert validate_job["runs-on"] == "ubuntu-latest"
    assert isinstance(validate_job["timeout-minutes"], int)
    assert 0 < validate_job["timeout-minutes"] <= 180
    # the preparation shared with the sharded jobs lives in a local composite action
    prepare = {"steps": load(PREPARE)["runs"]["steps"]}
    java, setup_java = step(prepare, lambda s: s.get("uses", "").startswith("actions/setup-java@"))
    assert str(setup_java["with"]["java-version"]) == "17"
    python, _ = step(prepare, lambda s: s.get("uses", "").startswith("actions/setup-python@"))
    kvm, kvm_step = step(prepare, lambda s: "udevadm" in s.get("run", ""))
    assert 'KERNEL=="kvm"' in kvm_step["run"]
    assert 'MODE="0666"' in kvm_step["run"]
    cached = {p.strip() for s in prepare["steps"] if s.get("uses", "").startswith("actions/cache")
              for p in s["with"]["path"].splitlines()}
    assert {"~/.gradle/caches", "~/.maestro", "${{ steps.image.outputs.dir }}"} <= cached
    assert "~/.android/avd" not in cached
    install, _ = step(prepare, lambda s: s.get("run", "").strip() == "python -m pip install -e tools")
    setup, _ = step(prepare, lambda s: s.get("run", "").strip() == "invoke setup")
    doctor, _ = step(prepare, lambda s: s.get("run", "").strip() == "invoke doctor")
    assert max(java, python, kvm) < install < setup < doctor
    prepared, _ = step(validate_job, lambda s: s.get("uses") == "./.github/actions/prepare")
    build, _ = build_step(validate_job)
    chain, chain_def = chain_step(validate_job)
    failed, _ = failure_step(validate_job)
    upload, _ = step(validate_job, lambda s: s.get("name") == "Upload the run record")
    assert prepared < build < chain < failed < upload
    assert chain_def["id"]
    # a failed build still reaches validate (which records it) and notify; a cancel or a failed
    # preparation (build skipped) leaves it to the failure path
    assert chain_def["if"] == "${{ !cancelled() && steps.build.outcome != 'skipped' }}"


def test_the_chain_script_runs_the_three_tasks_in_one_command(validate_job: dict[str, Any], tmp_path: Path) -> None:
    _, chain = chain_step(validate_job)
    done = run_script(chain["run"], tmp_path, {"invoke": 0}, INCLUDE_TAGS="")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "calls.log").read_text().splitlines() == ["invoke validate notify"]
    (tmp_path / "calls.log").unlink()
    done = run_script(chain["run"], tmp_path, {"invoke": 0}, INCLUDE_TAGS="smoke,production")
    assert (tmp_path / "calls.log").read_text().splitlines() == [
        "invoke validate --include-tags smoke,production notify"]


def _last_command(script: str) -> str:
    return [ln.strip() for ln in script.strip().splitlines()][-1]


def test_long_steps_exec_invoke_so_a_timeout_or_cancel_signals_it(production: dict[str, Any],
                                                                  tmp_path: Path) -> None:
    """The runner signals only the step's top process on a timeout or a cancel: it must be invoke (whose
    SIGTERM handling stops Gradle, Maestro and the emulator), not a bash that waits for it."""
    scripts = [s["run"] for job in production["jobs"].values() for s in job["steps"]
               if re.search(r"\binvoke (build-apk|validate|merge-results)\b", s.get("run", ""))
               and s.get("name") != "Report a run that did not finish"]
    assert len(scripts) == 5  # build and chain (single runner), build, shard, merge (sharded)
    for script in scripts:
        assert _last_command(script).startswith("exec invoke "), script
    # proven, not just spelled: the signalled process is invoke itself
    fake = tmp_path / "bin" / "invoke"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho $$ > "{tmp_path / "pid"}"\nexec sleep 30\n')
    fake.chmod(0o755)
    _, chain = chain_step(production["jobs"]["validate"])
    proc = subprocess.Popen(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", chain["run"]],
                            env={"PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}", "INCLUDE_TAGS": ""})
    try:
        for _ in range(300):
            if (tmp_path / "pid").exists() and (tmp_path / "pid").read_text().strip():
                break
            subprocess.run(["sleep", "0.05"], check=True)
        assert int((tmp_path / "pid").read_text()) == proc.pid  # the step's top process is invoke
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("verdict_code", [1, 2])
def test_the_step_fails_with_the_verdict_code(validate_job: dict[str, Any], tmp_path: Path,
                                              verdict_code: int) -> None:
    _, chain = chain_step(validate_job)
    done = run_script(chain["run"], tmp_path, {"invoke": verdict_code}, INCLUDE_TAGS="")
    assert done.returncode == verdict_code  # so the job fails on fail and error; no continue-on-error
    assert "continue-on-error" not in chain


def test_verdict_is_the_job_output(validate_job: dict[str, Any]) -> None:
    _, chain = chain_step(validate_job)
    assert validate_job["outputs"]["verdict"] == "${{ steps." + chain["id"] + ".outputs.verdict }}"


def test_results_are_uploaded_always(validate_job: dict[str, Any]) -> None:
    _, upload = step(validate_job, lambda s: s.get("name") == "Upload the run record")
    assert upload["if"] == "always()"
    results_dir = load(REPO / "invoke.yaml")["validation"]["results_dir"]
    paths = upload["with"]["path"].split()
    assert results_dir in paths
    assert upload["with"]["if-no-files-found"] in ("warn", "error", "ignore")


def test_production_runs_skip_data_cleanup(validate_job: dict[str, Any]) -> None:
    assert validate_job["env"]["SKIP_DATA_CLEANUP"] == "true"  # a string, as the flows compare it


SIGNING = ("ANDROID_KEYSTORE_BASE64", "ANDROID_KEYSTORE_PASSWORD", "ANDROID_KEY_ALIAS", "ANDROID_KEY_PASSWORD")
SETTINGS_VARS = ("SMTP_PORT", "SMTP_SECURITY")  # not secrets: repository variables


def test_secrets_reach_the_chain_through_env_only(production: dict[str, Any], validate_job: dict[str, Any]) -> None:
    _, chain = chain_step(validate_job)
    _, build = build_step(validate_job)
    for name in SECRETS:
        if name in SIGNING:
            assert build["env"][name] == "${{ secrets." + name + " }}"
            assert name not in chain["env"]  # the signing secrets reach the build step only
        elif name in SETTINGS_VARS:
            assert chain["env"][name] == "${{ vars." + name + " }}"
        else:
            assert chain["env"][name] == "${{ secrets." + name + " }}"
    for path, value in walk(production["jobs"]):
        if isinstance(value, str) and "secrets." in value:
            assert "env" in path and path[-2] == "env", path
        if isinstance(value, str) and "secrets.ANDROID_" in value:
            assert path[-3] == "steps" or path[-4] == "steps", path
    signing_steps = [s.get("name") for job in production["jobs"].values() for s in job["steps"]
                     if any(k in SIGNING for k in s.get("env", {}))]
    assert signing_steps == ["Build the production APK", "Build the APK"]
    assert not set(SETTINGS_VARS) & set(triggers(production)["workflow_call"]["secrets"])


# the gate ---------------------------------------------------------------------------------------------
def test_frontend_deployment_runs_only_on_pass(production: dict[str, Any]) -> None:
    gate = production["jobs"]["deploy-frontend"]
    assert gate["needs"] == ["validate", "merge-and-notify"]
    # !cancelled(), never always(): one of the two paths is skipped on every run, but a cancel never opens it;
    # only a full run (no include-tags) after a production deployment, and the job's success AND `pass`
    assert " ".join(gate["if"].split()) == (
        "!cancelled() && github.event_name == 'workflow_run' && !inputs.include-tags && "
        "((needs.validate.result == 'success' && needs.validate.outputs.verdict == 'pass') || "
        "(needs.merge-and-notify.result == 'success' && needs.merge-and-notify.outputs.verdict == 'pass'))")
    assert "always()" not in gate["if"]


# The production deployment, as each validation entry job's `if:` requires it.
PRODUCTION_RUN = (
    "(github.event_name != 'workflow_run' ||\n"
    " (github.event.workflow_run.conclusion == 'success' &&\n"
    "  github.event.workflow_run.event == 'push' &&\n"
    "  github.event.workflow_run.head_branch == 'main' &&\n"
    "  github.event.workflow_run.head_repository.full_name == github.repository &&\n"
    "  (github.workflow != 'Production Validation' || vars.PRODUCTION_VALIDATION_CALLED != 'true'))) &&\n"
)


def test_only_push_deployments_of_the_production_branch_are_validated(production: dict[str, Any]) -> None:
    on = triggers(production)
    assert on["workflow_run"]["branches"] == ["main"]
    for name in ("validate", "plan-shards", "build-apk"):
        assert production["jobs"][name]["if"].startswith(PRODUCTION_RUN), name
    # the branch the trigger filters on is the one the jobs require (a caller's trigger is not filtered)
    assert f"head_branch == '{on['workflow_run']['branches'][0]}'" in PRODUCTION_RUN
    # when a repository calls this file (vars.PRODUCTION_VALIDATION_CALLED), its own trigger stands down:
    # the workflow's `name:` is what github.workflow is in its own runs, never in a caller's
    assert production["name"] == "Production Validation"


def test_the_reusable_workflow_asks_callers_for_what_its_jobs_need(production: dict[str, Any]) -> None:
    """GitHub checks every nested job's permissions (skipped ones too) against what the caller grants
    when it loads a called workflow: the README's caller example must grant their union."""
    needed: dict[str, str] = {}
    for job in production["jobs"].values():
        for scope, level in job["permissions"].items():
            if needed.get(scope) != "write":
                needed[scope] = level
    readme = (REPO / "docs" / "workflow.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", readme, re.S)
    callers = [yaml.safe_load(b) for b in blocks if "/production-validation.yml" in b and "jobs:" in b]
    assert callers, "docs/workflow.md shows how to call the reusable workflow"
    for caller in callers:
        for job in caller["jobs"].values():
            if str(job.get("uses", "")).endswith("/production-validation.yml"):
                assert job["permissions"] == needed, (job["permissions"], needed)


def test_gate_starts_the_configured_deployment_workflow(production: dict[str, Any], tmp_path: Path) -> None:
    [gate_step] = production["jobs"]["deploy-frontend"]["steps"]
    env = {"REF": "main", "SHA": "a" * 40, "GH_TOKEN": "t", "GH_REPO": "org/app"}
    done = run_script(gate_step["run"], tmp_path, {"gh": 0}, FRONTEND_DEPLOY_WORKFLOW="Frontend Deploy", **env)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "calls.log").read_text().splitlines() == [f"gh workflow run Frontend Deploy --ref main -f sha={'a' * 40}"]
    assert "Frontend Deploy" in (tmp_path / "summary.md").read_text()
    failed = run_script(gate_step["run"], tmp_path, {"gh": 1}, FRONTEND_DEPLOY_WORKFLOW="Frontend Deploy", **env)
    assert failed.returncode == 1  # a deployment that could not start fails the gate job


def test_gate_without_a_configured_workflow_only_records_the_decision(production: dict[str, Any],
                                                                      tmp_path: Path) -> None:
    assert production["env"]["FRONTEND_DEPLOY_WORKFLOW"] == ""
    [gate_step] = production["jobs"]["deploy-frontend"]["steps"]
    done = run_script(gate_step["run"], tmp_path, {"gh": 0}, FRONTEND_DEPLOY_WORKFLOW="", SHA="b" * 40, REF="main")
    assert done.returncode == 0
    assert not (tmp_path / "calls.log").exists()
    assert "::notice title=Frontend gate open::" in done.stdout
    assert "may deploy" in (tmp_path / "summary.md").read_text()


# hardening --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", [PRODUCTION, CI, PREPARE], ids=lambda p: p.name)
def test_actions_are_pinned_to_full_commits_with_their_version(path: Path) -> None:
    lines = [ln for ln in path.read_text().splitlines() if re.match(r"^\s*-?\s*uses:", ln)]
    assert lines
    for line in lines:
        if line.split("uses:", 1)[1].strip().startswith("./"):
            continue
        assert PINNED.match(line), f"not pinned to a commit with a '# vX.Y.Z' comment: {line.strip()}"


@pytest.mark.parametrize("path", [PRODUCTION, CI, PREPARE], ids=lambda p: p.name)
def test_no_expressions_inside_run_scripts(path: Path) -> None:
    runs = [value for keys, value in walk(load(path)) if keys and keys[-1] == "run"]
    assert runs
    for script in runs:
        assert "${{" not in script, script


@pytest.mark.parametrize("path", [PRODUCTION, CI], ids=lambda p: p.name)
def test_least_permissions_per_job(path: Path) -> None:
    workflow = load(path)
    assert workflow["permissions"] in ({}, {"contents": "read"})
    for name, job in workflow["jobs"].items():
        assert isinstance(job.get("permissions"), dict), f"job {name} has no explicit permissions"
        assert "write-all" not in str(job["permissions"])
    # A write permission only where a step needs it: the commit status where `notify` runs, dispatching
    # where the gate starts the frontend deployment. Nothing else writes.
    needs_write = {"statuses": r"\binvoke\b.*\bnotify\b", "actions": r"\bgh workflow run\b"}
    writes = []
    for name, job in workflow["jobs"].items():
        scripts = " ".join(s.get("run", "") for s in job.get("steps", []))
        for scope, level in job["permissions"].items():
            if level == "write":
                assert scope in needs_write, f"job {name} may write {scope}"
                assert re.search(needs_write[scope], scripts), f"job {name} may write {scope} but does not need to"
                writes.append((name, scope))
    if path == PRODUCTION:
        assert ("validate", "statuses") in writes
        assert workflow["jobs"]["validate"]["permissions"]["actions"] == "read"  # the previous run's conclusion
    else:
        assert writes == []


def test_validations_queue_instead_of_overlapping(production: dict[str, Any]) -> None:
    # per workflow, event and ref: a manual run never replaces a pending post-deployment validation, and a
    # caller's group (its own workflow name) never equals this one, which would deadlock the call
    assert production["concurrency"] == {
        "group": "production-validation-${{ github.workflow }}-${{ github.event_name }}-"
                 "${{ github.event.workflow_run.head_branch || github.ref }}",
        "cancel-in-progress": False}


def test_ci_runs_once_per_pull_request_change() -> None:
    on = triggers(load(CI))
    assert on["push"] == {"branches": ["main"]}  # a PR branch's pushes are checked as the pull request
    assert "pull_request" in on


# the project's own CI ---------------------------------------------------------------------------------
def test_ci_runs_the_readme_test_command_on_push_and_pull_request() -> None:
    ci = load(CI)
    assert {"push", "pull_request"} <= set(triggers(ci))
    runs = [s["run"] for job in ci["jobs"].values() for s in job["steps"] if "run" in s]
    assert runs == ["bash .ci/run"]
    ci_run = (REPO / ".ci" / "run").read_text()
    assert not re.search(r"^[^#]*pip3? install", ci_run, re.M)  # PEP 668: nothing into the system's Python
    assert re.search(r"^python3 tools/bootstrap.py$", ci_run, re.M)
    assert re.search(r"^/usr/bin/python3 tools/bootstrap.py -s demo$", ci_run, re.M)
    readme = (REPO / "README.md").read_text()
    assert re.search(r"^python3 tools/bootstrap.py +#", readme, re.M)
    assert re.search(r"^python3 tools/bootstrap.py -s demo +#", readme, re.M)


def test_workflow_lint_is_a_default_nox_session() -> None:
    tree = ast.parse((REPO / "noxfile.py").read_text())
    sessions = next(node.value for node in ast.walk(tree) if isinstance(node, ast.Assign)
                    and ast.unparse(node.targets[0]) == "nox.options.sessions")
    assert "workflows" in ast.literal_eval(sessions)


# sharded runs (the `shards` input) -------------------------------------------------------------------
def test_shards_input_switches_to_a_matrix_then_one_merge_and_notify(production: dict[str, Any],
                                                                     tmp_path: Path) -> None:
    on, jobs = triggers(production), production["jobs"]
    for trigger in ("workflow_dispatch", "workflow_call"):
        assert on[trigger]["inputs"]["shards"]["default"] == 1
    assert jobs["validate"]["if"].endswith("(inputs.shards || 1) <= 1")
    assert jobs["plan-shards"]["if"].endswith("(inputs.shards || 1) > 1")
    shard_job = jobs["validate-shard"]
    assert shard_job["strategy"]["matrix"]["shard"] == "${{ fromJSON(needs.plan-shards.outputs.indices) }}"
    assert shard_job["strategy"]["fail-fast"] is False
    # every shard validates, none builds or notifies; the merge job notifies once, after failed shards too
    [validate_step] = [s for s in shard_job["steps"] if "invoke validate" in s.get("run", "")]
    assert "notify" not in validate_step["run"] and "build-apk" not in validate_step["run"]
    assert "--shard" in validate_step["run"]
    merge = jobs["merge-and-notify"]
    assert merge["needs"] == ["plan-shards", "build-apk", "validate-shard"]
    assert merge["if"].startswith("always()")
    [merge_step] = [s for s in merge["steps"] if s.get("id") == "merge"]
    assert merge_step["run"] == "exec invoke merge-results build/shards notify"
    assert merge["outputs"]["verdict"] == "${{ steps.merge.outputs.verdict }}"
    uploads = [s for s in shard_job["steps"] if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert [u["if"] for u in uploads] == ["always()"]

    # the planning script numbers the shards; the shard script passes its share and the durations
    [plan_step] = jobs["plan-shards"]["steps"]
    output = tmp_path / "out"
    done = run_script(plan_step["run"], tmp_path, {}, SHARDS="3", GITHUB_OUTPUT=str(output))
    assert done.returncode == 0, done.stderr
    assert output.read_text().splitlines() == ["count=3", "indices=[1, 2, 3]"]
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "timings.json").write_text("{}")
    (tmp_path / "bin").mkdir(exist_ok=True)
    fake = tmp_path / "bin" / "invoke"
    fake.write_text(f'#!/bin/sh\necho "invoke $*" >> "{tmp_path / "calls.log"}"\n')
    fake.chmod(0o755)
    done = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", validate_step["run"]], cwd=tmp_path,
        env={"PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}", "SHARD": "2", "SHARDS": "3",
             "INCLUDE_TAGS": "smoke"}, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "calls.log").read_text().splitlines() == [
        "invoke validate --shard 2/3 --include-tags smoke --timings build/timings.json"]


@pytest.mark.parametrize(("shards", "ok"), [("2", True), ("256", True), ("3.0", True), ("257", False), ("1", False),
                                            ("0", False), ("2.5", False), ("-3", False), ("many", False)])
def test_the_shard_count_is_checked(production: dict[str, Any], tmp_path: Path, shards: str, ok: bool) -> None:
    [plan_step] = production["jobs"]["plan-shards"]["steps"]
    output = tmp_path / "out"
    done = run_script(plan_step["run"], tmp_path, {}, SHARDS=shards, GITHUB_OUTPUT=str(output))
    assert (done.returncode == 0) is ok, done.stdout + done.stderr
    if not ok:
        assert "::error title=shards::shards must be a whole number from 1 to 256" in done.stdout
        assert not output.exists() or output.read_text() == ""


def test_re_runs_find_the_build_and_replace_their_records(production: dict[str, Any]) -> None:
    """"Re-run failed jobs" re-runs the shards and the merge, not a build that succeeded: no artifact name
    may carry the attempt number, and every upload overwrites its name."""
    uploads = [s for job in production["jobs"].values() for s in job["steps"]
               if s.get("uses", "").startswith("actions/upload-artifact@")]
    downloads = [s for job in production["jobs"].values() for s in job["steps"]
                 if s.get("uses", "").startswith("actions/download-artifact@")]
    assert len(uploads) == 7 and len(downloads) == 3  # two of each: the released app (tests/e2e/test_impact.py)
    for s in uploads + downloads:
        assert "run_attempt" not in str(s["with"]), s
    for upload in uploads:
        assert upload["with"]["overwrite"] is True
    names = {u["with"]["name"] for u in uploads}
    assert len(names) == 5  # the single-runner and merged records share one name (only one runs), so do the released apps
    apk_downloads = [d for d in downloads if "name" in d["with"]]
    assert len(apk_downloads) == 2 and all(d["with"]["name"] in names for d in apk_downloads)
    [records] = [d for d in downloads if "pattern" in d["with"]]
    shard_upload = next(u for u in uploads if "shard-" in u["with"]["name"])
    assert fnmatch.fnmatch(shard_upload["with"]["name"].replace("${{ matrix.shard }}", "7"), records["with"]["pattern"])


def test_one_job_builds_the_apk_every_shard_validates(production: dict[str, Any]) -> None:
    jobs = production["jobs"]
    build = jobs["build-apk"]
    assert build["if"] == jobs["plan-shards"]["if"]
    assert [s["run"] for s in build["steps"] if "run" in s] == ["exec invoke build-apk"]
    assert build["env"]["INVOKE_VALIDATION_RESULTS_DIR"] == "build/apk"
    [upload] = [s for s in build["steps"] if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert upload["if"] == "always()" and upload["with"]["path"] == "build/apk"  # a failed build is recorded too
    # the signing secrets reach the build job only
    build_env = {k for s in build["steps"] for k in s.get("env", {})}
    assert {"ANDROID_KEYSTORE_BASE64", "ANDROID_KEY_PASSWORD"} <= build_env
    shard = jobs["validate-shard"]
    assert shard["needs"] == ["plan-shards", "build-apk"]
    assert "needs.build-apk.result == 'failure'" in shard["if"]  # shards record a failed build as `error`
    assert not [v for _, v in walk(shard) if isinstance(v, str) and "secrets." in v]
    names = [s.get("uses", "").split("@")[0] or s.get("run", "") for s in shard["steps"]]
    download = names.index("actions/download-artifact")
    assert shard["steps"][download]["with"]["name"] == upload["with"]["name"]
    assert shard["steps"][download]["with"]["path"] == shard["env"]["INVOKE_VALIDATION_RESULTS_DIR"]
    assert download < next(i for i, n in enumerate(names) if n.startswith("flags=("))


def test_validation_jobs_share_one_runner_preparation(production: dict[str, Any]) -> None:
    prepare = load(PREPARE)
    names = [s["name"] for s in prepare["runs"]["steps"]]
    assert names[-1] == "Check the toolchain"  # invoke doctor, after invoke setup
    for job in ("validate", "validate-shard", "build-apk"):
        uses = [s.get("uses") for s in production["jobs"][job]["steps"]]
        assert uses.index("./.github/actions/prepare") == 1  # right after the checkout
    [build_prepare] = [s for s in production["jobs"]["build-apk"]["steps"] if s.get("uses") == "./.github/actions/prepare"]
    assert build_prepare["with"] == {"emulator": "false"}  # no KVM, Maestro or system image to build
    emulator_only = [s["name"] for s in prepare["runs"]["steps"] if str(s.get("if", "")).startswith("inputs.emulator == 'true'")]
    assert emulator_only == ["Enable KVM for the emulator", "Cache Maestro", "Which system image",
                             "Restore the system image", "Install Maestro and the Android SDK packages",
                             "Read the system image's revision", "Save the system image", "Check the toolchain"]


# time budgets ----------------------------------------------------------------------------------------
PREPARE_MINUTES = 20  # setup-java/python, pip, `invoke setup` (Maestro, SDK packages), doctor, caches
MARGIN_MINUTES = 2  # writing the record and the artifacts after a limit is hit


def _harness_limits(config: dict[str, Any] | None = None) -> dict[str, float]:
    """The harness's own limits, in seconds, from the project's invoke.yaml through the real loaders."""
    from prodval.flows import discover
    from prodval.settings import load as load_validation
    from prodval.settings import load_build, load_emulator, load_notify

    config = load(REPO / "invoke.yaml") if config is None else config
    section = config.get("validation") or {}
    validation = load_validation(section, {})
    build = load_build(config.get("build") or {}, section, {})
    emulator = load_emulator(config.get("emulator") or {}, {})
    notify = load_notify(config.get("notify") or {}, section, {})
    flows = discover(REPO / validation.flows, validation.include_tags, validation.exclude_tags).flows
    assert flows
    return {
        "build": build.timeout,
        # one cold-boot retry follows a timeout; then `adb install` of the APK
        "boot": 2 * emulator.boot_timeout + emulator.stop_timeout + validation.install_timeout,
        # every attempt may run to its timeout and be killed, and a killed maestro's device rests after it
        "flows": len(flows) * (validation.retries + 1) * (validation.flow_timeout + validation.session_wait),
        "notify": notify.deadline,  # every channel at once, all of them within this
        # impact triage: every failed flow once more with the released app, which is installed over the new
        # build and replaced by it again afterwards (tests/e2e/test_impact.py)
        "triage": len(flows) * (validation.flow_timeout + validation.session_wait) + 2 * validation.install_timeout,
    }


def test_step_budgets_cover_the_harness_limits(production: dict[str, Any]) -> None:
    limits = _harness_limits()
    jobs = production["jobs"]
    _, build = build_step(jobs["validate"])
    _, chain = chain_step(jobs["validate"])
    assert build["timeout-minutes"] * 60 >= limits["build"] + MARGIN_MINUTES * 60
    assert chain["timeout-minutes"] * 60 >= (limits["boot"] + limits["flows"] + limits["triage"] + limits["notify"]
                                             + MARGIN_MINUTES * 60)
    _, failed = failure_step(jobs["validate"])
    [released] = [s for s in jobs["validate"]["steps"] if s.get("id") == "released"]
    steps = build["timeout-minutes"] + chain["timeout-minutes"] + failed["timeout-minutes"] + released["timeout-minutes"]
    assert jobs["validate"]["timeout-minutes"] >= steps + PREPARE_MINUTES  # the steps' own limits hit first
    [shard_build] = [s for s in jobs["build-apk"]["steps"] if s.get("run") == "exec invoke build-apk"]
    assert shard_build["timeout-minutes"] == build["timeout-minutes"]
    assert jobs["build-apk"]["timeout-minutes"] >= shard_build["timeout-minutes"]
    [shard] = [s for s in jobs["validate-shard"]["steps"] if "invoke validate" in s.get("run", "")]
    assert shard["timeout-minutes"] * 60 >= limits["boot"] + limits["flows"] + limits["triage"] + MARGIN_MINUTES * 60
    [shard_released] = [s for s in jobs["validate-shard"]["steps"] if s.get("id") == "released"]
    assert jobs["validate-shard"]["timeout-minutes"] >= (shard["timeout-minutes"] + shard_released["timeout-minutes"]
                                                         + PREPARE_MINUTES)


@pytest.mark.parametrize(("section", "key", "value"), [("validation", "flow_timeout", 3600),
                                                      ("validation", "retries", 5),
                                                      ("emulator", "boot_timeout", 3000)])
def test_the_budget_check_reads_the_settings(section: str, key: str, value: int) -> None:
    """Raising a limit the harness reads beyond the chain step's budget is caught by the check above."""
    config = load(REPO / "invoke.yaml")
    config[section][key] = value
    limits = _harness_limits(config)
    _, chain = chain_step(load(PRODUCTION)["jobs"]["validate"])
    assert chain["timeout-minutes"] * 60 < limits["boot"] + limits["flows"] + limits["notify"]


# failures outside the chain --------------------------------------------------------------------------
@pytest.mark.parametrize("job", ["validate", "merge-and-notify", "report-unfinished"])
def test_a_run_that_did_not_finish_still_reports(production: dict[str, Any], tmp_path: Path, job: str) -> None:
    index, failed = failure_step(production["jobs"][job])
    assert failed["if"] == ("${{ always() }}" if job == "report-unfinished" else "${{ failure() || cancelled() }}")
    assert failed["id"] == "unfinished"
    if job != "report-unfinished":
        assert production["jobs"][job]["outputs"]["reported"] == "${{ steps.unfinished.outputs.reported }}"
    assert failed["env"]["RECORD_DIR"] == "build/validation" and failed["env"]["GH_TOKEN"] == "${{ github.token }}"
    uploads = [i for i, s in enumerate(production["jobs"][job]["steps"]) if s.get("uses", "").startswith("actions/upload")]
    assert index < uploads[-1]  # the record it writes is uploaded
    (tmp_path / "bin").mkdir()
    output = tmp_path / "github-output"
    env = {"RECORD_DIR": str(tmp_path / "rec"), "SHA": "d" * 40, "GITHUB_REPOSITORY": "org/app",
           "GITHUB_SERVER_URL": "https://github.com", "GITHUB_RUN_ID": "77", "GITHUB_OUTPUT": str(output)}

    def run(tools: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], list[str]]:
        log = tmp_path / "calls.log"
        log.unlink(missing_ok=True)
        output.write_text("")
        for old in (tmp_path / "bin").iterdir():
            old.unlink()
        for name, body in tools.items():
            fake = tmp_path / "bin" / name
            fake.write_text(f'#!/bin/sh\necho "{name} $*" >> "{log}"\n{body}\n')
            fake.chmod(0o755)
        done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", failed["run"]],
                              env={"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", **env}, capture_output=True,
                              text=True, timeout=30)
        return done, log.read_text().splitlines() if log.exists() else []

    # nothing recorded (the preparation failed after installing the harness): an error record, then notify
    done, calls = run({"invoke": "exit 0", "gh": "exit 0"})
    assert done.returncode == 0, done.stderr
    assert calls == [f"invoke merge-results {tmp_path / 'rec'}", "invoke notify"]
    assert output.read_text() == "reported=true\n"  # the report-unfinished job stands down
    # the chain was stopped after it recorded something, before notify: notify from that record
    (tmp_path / "rec").mkdir()
    (tmp_path / "rec" / "results.json").write_text(json.dumps({"verdict": None, "stages": {"validate": {}}}))
    done, calls = run({"invoke": "exit 0", "gh": "exit 0"})
    assert calls == ["invoke notify"]
    # notify already reported this run (fail/error verdict): nothing is sent twice
    (tmp_path / "rec" / "results.json").write_text(json.dumps({"verdict": "fail", "stages": {"notify": {}}}))
    done, calls = run({"invoke": "exit 0", "gh": "exit 0"})
    assert done.returncode == 0 and calls == [] and output.read_text() == "reported=true\n"
    # no harness (pip failed): the error status is posted directly, and the step fails visibly
    (tmp_path / "rec" / "results.json").unlink()
    done, calls = run({"gh": "exit 0"})
    assert done.returncode == 1
    assert calls == [f"gh api --method POST repos/org/app/statuses/{'d' * 40} -f state=error -f "
                     "context=production-validation -f description=Production validation did not finish "
                     "-f target_url=https://github.com/org/app/actions/runs/77"]
    assert "::error title=Production validation did not finish::" in done.stdout
    assert output.read_text() == ""  # nobody was alerted: the report-unfinished job tries again
    # notify itself broken: the status is still posted
    done, calls = run({"invoke": "exit 2", "gh": "exit 0"})
    assert calls[-1].startswith("gh api --method POST") and done.returncode == 1


# caches -----------------------------------------------------------------------------------------------
def test_the_gradle_cache_is_saved_whatever_the_verdict(production: dict[str, Any]) -> None:
    prepare = load(PREPARE)
    [restore] = [s for s in prepare["runs"]["steps"] if s.get("id") == "gradle"]
    assert restore["uses"].startswith("actions/cache/restore@")
    assert prepare["outputs"]["gradle-cache-key"]["value"] == "${{ steps.gradle.outputs.cache-primary-key }}"
    assert prepare["outputs"]["gradle-cache-hit"]["value"] == "${{ steps.gradle.outputs.cache-hit }}"
    for name in ("validate", "build-apk"):
        steps = production["jobs"][name]["steps"]
        prepared = next(s for s in steps if s.get("uses") == "./.github/actions/prepare")
        [save] = [s for s in steps if s.get("uses", "").startswith("actions/cache/save@") and "gradle" in s["with"]["path"]]
        assert save["if"].startswith("${{ always() && ")  # a failed or errored validation still saves it
        assert f"steps.{prepared['id']}.outputs.gradle-cache-hit != 'true'" in save["if"]
        assert save["with"]["key"] == f"${{{{ steps.{prepared['id']}.outputs.gradle-cache-key }}}}"
        assert save["with"]["path"] == restore["with"]["path"]
        assert steps.index(save) > max(i for i, s in enumerate(steps) if "invoke" in s.get("run", ""))
        builds = [s for s in steps if s.get("run") == "exec invoke build-apk"]
        assert builds and builds[0]["env"]["GRADLE_OPTS"] == "-Dorg.gradle.daemon=false"  # no daemon left behind


def test_the_system_image_is_cached_by_package_and_revision(tmp_path: Path) -> None:
    """No AVD cache (-no-snapshot-save leaves no snapshot to reuse, and it would carry the last run's app
    and data); the 1.5 GB system image is cached, keyed on its package and its revision."""
    prepare = {s.get("name"): s for s in load(PREPARE)["runs"]["steps"]}
    assert not [s for s in prepare.values() if "avd" in str(s.get("with", {}).get("path", ""))]
    from prodval.settings import load_emulator

    options = load_emulator(load(REPO / "invoke.yaml").get("emulator") or {}, {}).emulator_options
    assert "-no-snapshot-save" in str(options)  # nothing a cached AVD could resume from

    # the package and folder come from invoke.yaml through the harness's own settings
    which = prepare["Which system image"]
    out = tmp_path / "out"
    sdk = tmp_path / "sdk"
    done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", which["run"]], cwd=REPO,
                          env={**os.environ, "GITHUB_OUTPUT": str(out), "ANDROID_HOME": str(sdk),
                               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    emulator = load(REPO / "invoke.yaml")["emulator"]
    package = f"system-images-android-{emulator['api_level']}-{emulator['target']}-{emulator['arch']}"
    image_dir = sdk / "system-images" / f"android-{emulator['api_level']}" / emulator["target"] / emulator["arch"]
    assert out.read_text().splitlines() == [f"package={package}", f"dir={image_dir}"]

    restore, save = prepare["Restore the system image"], prepare["Save the system image"]
    assert restore["with"]["path"] == save["with"]["path"] == "${{ steps.image.outputs.dir }}"
    assert restore["with"]["restore-keys"] == "sysimg-${{ runner.os }}-${{ steps.image.outputs.package }}-"
    names = list(prepare)
    assert names.index("Restore the system image") < names.index("Install Maestro and the Android SDK packages") \
        < names.index("Read the system image's revision") < names.index("Save the system image")

    # the revision the SDK installed names the saved key; nothing is saved when that key was restored
    revision = prepare["Read the system image's revision"]
    image_dir.mkdir(parents=True)
    (image_dir / "source.properties").write_text("Pkg.Desc=Google APIs Intel x86_64 Atom System Image\nPkg.Revision=14\n")
    for restored, saves in (("", True), (f"sysimg-Linux-{package}-13", True), (f"sysimg-Linux-{package}-14", False)):
        out.unlink(missing_ok=True)
        done = run_script(revision["run"], tmp_path, {}, IMAGE_DIR=str(image_dir), RESTORED=restored,
                          PACKAGE=package, RUNNER_OS="Linux", GITHUB_OUTPUT=str(out))
        assert done.returncode == 0, done.stderr
        lines = out.read_text().splitlines()
        assert lines[0] == f"key=sysimg-Linux-{package}-14"
        assert ("save=true" in lines) is saves
    assert save["if"] == "inputs.emulator == 'true' && steps.revision.outputs.save == 'true'"
    assert save["with"]["key"] == "${{ steps.revision.outputs.key }}"


def test_the_readme_offers_only_gates_that_work() -> None:
    """The commit status is posted on deployed commits, never on a pull request's head: requiring it in branch
    protection blocks every merge, and environments have no "required status" rule. The gate section (docs/workflow.md)
    numbers only the shipped job and the deploy job's own status check."""
    readme = (REPO / "docs" / "workflow.md").read_text()
    gate = readme[readme.index("## The gate"):readme.index("**Hardening**")]
    options = re.findall(r"^\d+\. \*\*(.+?)\*\*", gate, re.M)
    assert options == ["The `deploy-frontend` job",
                       "Your frontend deploy job checks the commit status of the SHA it deploys"]
    assert "does not work as a gate" in gate and "blocks every merge" in gate
    every_doc = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    assert not re.search(r"require it in\s+branch protection", "\n".join(p.read_text() for p in every_doc))


def test_a_lost_runner_or_a_job_timeout_is_reported_by_another_job(production: dict[str, Any]) -> None:
    """A lost runner or a job-level timeout runs no further step, so the failure path cannot run there."""
    job = production["jobs"]["report-unfinished"]
    assert job["needs"] == ["deployed-commit", "validate", "merge-and-notify"]  # deployed-commit: the commit
    condition = " ".join(job["if"].split())
    assert condition.startswith("always() && ")
    for needed in ("validate", "merge-and-notify"):
        assert (f"(needs.{needed}.result != 'success' && needs.{needed}.result != 'skipped' && "
                f"!needs.{needed}.outputs.verdict && needs.{needed}.outputs.reported != 'true')") in condition
    assert "needs.deploy-frontend" not in condition
    uses = [s.get("uses", "").split("@")[0] for s in job["steps"]]
    assert uses[:2] == ["actions/checkout", "actions/setup-python"]
    assert [s.get("run") for s in job["steps"]][2] == "python -m pip install -e tools"
    _, failed = failure_step(job)
    assert failed["run"] == failure_step(production["jobs"]["validate"])[1]["run"]  # one script, three places
    [upload] = [s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert upload["if"] == "always()" and upload["with"]["path"] == "build/validation"
