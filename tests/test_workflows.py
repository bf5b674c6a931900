"""The GitHub workflows: what the production validation runs, how it gates, and how it is hardened.

actionlint and zizmor check syntax and security (`nox -s workflows`); these tests check our intent:
the chain, the upload, the gate, pins, permissions, secrets, concurrency. The `run:` scripts that
matter are executed with bash against fake `invoke` and `gh` executables.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
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
    return step(job, lambda s: "invoke build-apk validate" in s.get("run", ""))


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
    assert on["workflow_run"] == {"workflows": ["Terraform Deploy"], "types": ["completed"]}
    assert PRODUCTION.read_text().count("Terraform Deploy") == 1, "the deployment workflow's name is in one place"
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
    assert 0 < validate_job["timeout-minutes"] <= 120
    # the preparation shared with the sharded jobs lives in a local composite action
    prepare = {"steps": load(PREPARE)["runs"]["steps"]}
    java, setup_java = step(prepare, lambda s: s.get("uses", "").startswith("actions/setup-java@"))
    assert str(setup_java["with"]["java-version"]) == "17"
    python, _ = step(prepare, lambda s: s.get("uses", "").startswith("actions/setup-python@"))
    kvm, kvm_step = step(prepare, lambda s: "udevadm" in s.get("run", ""))
    assert 'KERNEL=="kvm"' in kvm_step["run"]
    assert 'MODE="0666"' in kvm_step["run"]
    cached = {p.strip() for s in prepare["steps"] if s.get("uses", "").startswith("actions/cache@")
              for p in s["with"]["path"].splitlines()}
    assert {"~/.gradle/caches", "~/.android/avd", "~/.maestro"} <= cached
    install, _ = step(prepare, lambda s: s.get("run", "").strip() == "python -m pip install -e tools")
    setup, _ = step(prepare, lambda s: s.get("run", "").strip() == "invoke setup")
    assert max(java, python, kvm) < install < setup
    prepared, _ = step(validate_job, lambda s: s.get("uses") == "./.github/actions/prepare")
    chain, chain_def = chain_step(validate_job)
    upload, _ = step(validate_job, lambda s: s.get("uses", "").startswith("actions/upload-artifact@"))
    assert prepared < chain < upload
    assert chain_def["id"]


def test_the_chain_script_runs_the_three_tasks_in_one_command(validate_job: dict[str, Any], tmp_path: Path) -> None:
    _, chain = chain_step(validate_job)
    done = run_script(chain["run"], tmp_path, {"invoke": 0}, INCLUDE_TAGS="")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "calls.log").read_text().splitlines() == ["invoke build-apk validate notify"]
    (tmp_path / "calls.log").unlink()
    done = run_script(chain["run"], tmp_path, {"invoke": 0}, INCLUDE_TAGS="smoke,production")
    assert (tmp_path / "calls.log").read_text().splitlines() == [
        "invoke build-apk validate --include-tags smoke,production notify"]


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
    _, upload = step(validate_job, lambda s: s.get("uses", "").startswith("actions/upload-artifact@"))
    assert upload["if"] == "always()"
    results_dir = load(REPO / "invoke.yaml")["validation"]["results_dir"]
    paths = upload["with"]["path"].split()
    assert results_dir in paths
    assert upload["with"]["if-no-files-found"] in ("warn", "error", "ignore")


def test_production_runs_skip_data_cleanup(validate_job: dict[str, Any]) -> None:
    assert validate_job["env"]["SKIP_DATA_CLEANUP"] == "true"  # a string, as the flows compare it


def test_secrets_reach_the_chain_through_env_only(production: dict[str, Any], validate_job: dict[str, Any]) -> None:
    _, chain = chain_step(validate_job)
    for name in SECRETS:
        assert chain["env"][name] == "${{ secrets." + name + " }}"
    for path, value in walk(production["jobs"]):
        if isinstance(value, str) and "secrets." in value:
            assert "env" in path and path[-2] == "env", path


# the gate ---------------------------------------------------------------------------------------------
def test_frontend_deployment_runs_only_on_pass(production: dict[str, Any]) -> None:
    gate = production["jobs"]["deploy-frontend"]
    assert gate["needs"] == ["validate", "merge-and-notify"]
    # always() because one of the two validation paths is skipped on every run; the verdict decides
    assert gate["if"] == ("always() && (needs.validate.outputs.verdict == 'pass' || "
                          "needs.merge-and-notify.outputs.verdict == 'pass')")


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
    assert production["concurrency"] == {"group": "production-validation", "cancel-in-progress": False}


# the project's own CI ---------------------------------------------------------------------------------
def test_ci_runs_the_readme_test_command_on_push_and_pull_request() -> None:
    ci = load(CI)
    assert {"push", "pull_request"} <= set(triggers(ci))
    runs = [s["run"] for job in ci["jobs"].values() for s in job["steps"] if "run" in s]
    assert runs == ["bash .ci/run"]
    ci_run = (REPO / ".ci" / "run").read_text()
    assert "python3 -m pip install" in ci_run
    assert re.search(r"^python3 -m nox$", ci_run, re.M)
    assert "python3 -m pip install nox && python3 -m nox" in (REPO / "README.md").read_text()


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
    [merge_step] = [s for s in merge["steps"] if "merge-results" in s.get("run", "")]
    assert merge_step["run"] == "invoke merge-results build/shards notify"
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


def test_one_job_builds_the_apk_every_shard_validates(production: dict[str, Any]) -> None:
    jobs = production["jobs"]
    build = jobs["build-apk"]
    assert build["if"] == jobs["plan-shards"]["if"]
    assert [s["run"] for s in build["steps"] if "run" in s] == ["invoke build-apk"]
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
    assert names[-1] == "Install Maestro and the Android SDK packages"
    for job in ("validate", "validate-shard", "build-apk"):
        uses = [s.get("uses") for s in production["jobs"][job]["steps"]]
        assert uses.index("./.github/actions/prepare") == 1  # right after the checkout
    [build_prepare] = [s for s in production["jobs"]["build-apk"]["steps"] if s.get("uses") == "./.github/actions/prepare"]
    assert build_prepare["with"] == {"emulator": "false"}  # no KVM, Maestro or system image to build
    emulator_only = [s["name"] for s in prepare["runs"]["steps"] if s.get("if") == "inputs.emulator == 'true'"]
    assert emulator_only == ["Enable KVM for the emulator", "Cache the AVD", "Cache Maestro",
                             "Install Maestro and the Android SDK packages"]
