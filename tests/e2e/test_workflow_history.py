"""The production workflow's scheduled re-validation and its run history (issue 16): the `schedule:` trigger,
how a scheduled run finds the deployed commit, the history file restored before validate and saved after
it in the Actions cache, the gate and the commit status a scheduled run never moves, and the concurrency
that keeps a scheduled run from replacing a deployment's validation.

actionlint and zizmor check the file (`nox -s workflows`); the `run:` scripts are executed with bash
against fake `gh` and `invoke` executables.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PRODUCTION = REPO / ".github" / "workflows" / "production-validation.yml"
DOCS = REPO / "docs" / "workflow.md"
SHA = "abc1234def5678abc1234def5678abc1234def56"
CACHE_PIN = re.compile(r"^actions/cache/(restore|save)@([0-9a-f]{40})$")


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(PRODUCTION.read_text())
    return data


def on(workflow: dict[str, Any]) -> dict[str, Any]:
    triggers: dict[str, Any] = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    return triggers


def bash(script: str, tmp_path: Path, gh: str = "", **env: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run a `run:` script as the runner does, with a fake `gh` whose body is `gh`; (result, gh calls)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    log = tmp_path / "gh.log"
    log.unlink(missing_ok=True)
    fake = bin_dir / "gh"
    fake.write_text(f'#!/bin/sh\necho "gh $*" >> "{log}"\n{gh}\n')
    fake.chmod(0o755)
    full = {"PATH": f"{bin_dir}{os.pathsep}/usr/bin:/bin", "GITHUB_OUTPUT": str(tmp_path / "output"),
            "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"), **env}
    done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script], env=full,
                          capture_output=True, text=True, timeout=30)
    return done, log.read_text().splitlines() if log.exists() else []


# ---- the schedule ------------------------------------------------------------------------------------------

def test_a_documented_schedule_every_six_hours(workflow: dict[str, Any]) -> None:
    [entry] = on(workflow)["schedule"]
    cron = entry["cron"]
    minute, hour, day, month, weekday = cron.split()
    assert minute.isdigit() and 0 < int(minute) < 60  # not the top of the hour, GitHub's busiest minute
    assert (hour, day, month, weekday) == ("*/6", "*", "*", "*")
    docs = DOCS.read_text()
    assert f"`{cron}`" in docs and "every 6 hours" in docs


# ---- the deployed commit -----------------------------------------------------------------------------------

def _finder(workflow: dict[str, Any]) -> dict[str, Any]:
    [found] = workflow["jobs"]["deployed-commit"]["steps"]
    return found  # type: ignore[no-any-return]


def test_the_deployed_commit_is_worked_out_once_for_the_jobs_that_run_on_the_schedule(workflow: dict[str, Any]) -> None:
    jobs = workflow["jobs"]
    finder = jobs["deployed-commit"]
    assert "if" not in finder  # every event: it hands on the deployment's commit too
    assert finder["permissions"] == {"actions": "read"}
    assert finder["outputs"]["sha"] == "${{ steps.find.outputs.sha }}"
    for name in ("validate", "report-unfinished"):
        assert "deployed-commit" in jobs[name]["needs"]
        assert jobs[name]["env"]["INVOKE_NOTIFY_DEPLOYED_SHA"] == "${{ needs.deployed-commit.outputs.sha }}"
    checkout = jobs["validate"]["steps"][0]
    assert checkout["uses"].startswith("actions/checkout@")
    assert checkout["with"]["ref"] == "${{ env.INVOKE_NOTIFY_DEPLOYED_SHA }}"  # the job's, from the finder
    # it names the deployment workflow and branch the trigger names
    env = _finder(workflow)["env"]
    assert [env["DEPLOY_WORKFLOW"]] == on(workflow)["workflow_run"]["workflows"]
    assert [env["DEPLOY_BRANCH"]] == on(workflow)["workflow_run"]["branches"]
    # the sharded path never runs on the schedule (no `shards` input): it keeps the workflow's definition
    assert "(inputs.shards || 1) > 1" in jobs["plan-shards"]["if"]


def test_a_scheduled_run_validates_the_last_successful_deployment(workflow: dict[str, Any], tmp_path: Path) -> None:
    step = _finder(workflow)
    env = {"EVENT": "schedule", "DEPLOY_WORKFLOW": "Terraform Deploy", "DEPLOY_BRANCH": "main",
           "INVOKE_NOTIFY_DEPLOYED_SHA": "f" * 40}  # the default branch's head: not what is deployed
    done, calls = bash(step["run"], tmp_path, f"echo {SHA}", **env)
    assert done.returncode == 0, done.stderr
    assert calls == ["gh run list --workflow Terraform Deploy --branch main --event push --status success "
                     "--limit 1 --json headSha --jq .[0].headSha // \"\""]
    assert (tmp_path / "output").read_text() == f"sha={SHA}\n"
    assert SHA in (tmp_path / "summary.md").read_text()


@pytest.mark.parametrize("gh", ["echo", "exit 1"], ids=["no-deployment", "api-down"])
def test_no_deployment_found_stops_the_scheduled_run_loudly(workflow: dict[str, Any], tmp_path: Path,
                                                            gh: str) -> None:
    env = {"EVENT": "schedule", "DEPLOY_WORKFLOW": "Terraform Deploy", "DEPLOY_BRANCH": "main",
           "INVOKE_NOTIFY_DEPLOYED_SHA": "f" * 40}
    done, _ = bash(_finder(workflow)["run"], tmp_path, gh, **env)
    assert done.returncode == 1
    assert "::error title=No deployed commit::no successful run of the workflow 'Terraform Deploy' on main" in done.stdout
    assert not (tmp_path / "output").exists()  # never the default branch's head instead


def test_other_runs_hand_on_the_workflow_s_commit_without_asking_the_api(workflow: dict[str, Any],
                                                                         tmp_path: Path) -> None:
    for event in ("workflow_run", "workflow_dispatch"):
        done, calls = bash(_finder(workflow)["run"], tmp_path, "exit 1", EVENT=event, INVOKE_NOTIFY_DEPLOYED_SHA=SHA)
        assert done.returncode == 0 and calls == [], done.stdout + done.stderr
        assert (tmp_path / "output").read_text() == f"sha={SHA}\n"
        (tmp_path / "output").unlink()
    done, _ = bash(_finder(workflow)["run"], tmp_path, "", EVENT="workflow_dispatch", INVOKE_NOTIFY_DEPLOYED_SHA="main")
    assert done.returncode == 1 and "'main' is not a commit SHA" in done.stdout


# ---- the run history in the Actions cache ------------------------------------------------------------------

def _cache_steps(job: dict[str, Any], kind: str) -> list[tuple[int, dict[str, Any]]]:
    return [(i, s) for i, s in enumerate(job["steps"]) if s.get("uses", "").startswith(f"actions/cache/{kind}@")
            and "history" in s["with"]["path"]]


@pytest.mark.parametrize(("job_name", "work"), [("validate", "invoke validate"), ("merge-and-notify", "merge-results")])
def test_the_history_is_restored_before_the_run_and_saved_after_it_whatever_happened(
        workflow: dict[str, Any], job_name: str, work: str) -> None:
    job = workflow["jobs"][job_name]
    history_path = yaml.safe_load((REPO / "invoke.yaml").read_text())["history"]["path"]
    [(restored_at, restore)] = _cache_steps(job, "restore")
    [(saved_at, save)] = _cache_steps(job, "save")
    runs = [i for i, s in enumerate(job["steps"]) if "invoke" in s.get("run", "")]
    worked = next(i for i, s in enumerate(job["steps"]) if work in s.get("run", ""))
    checkout = next(i for i, s in enumerate(job["steps"]) if s.get("uses", "").startswith("actions/checkout@"))
    assert checkout < restored_at < worked  # after the checkout, which cleans the folder
    assert saved_at > max(runs)  # after the failure path too: its notify records the alerts it sent
    assert restore["with"]["path"] == save["with"]["path"] == history_path
    # one key per run and attempt (a cache key is written once); the newest earlier copy by prefix
    key = "prodval-history-${{ github.run_id }}-${{ github.run_attempt }}"
    assert restore["with"]["key"] == save["with"]["key"] == key
    assert restore["with"]["restore-keys"] == "prodval-history-" and key.startswith(restore["with"]["restore-keys"])
    # saved whatever the verdict, a cancel too; only when there is a file to save, and only when the
    # restore ran: a history the failure path started afresh must not become the newest copy
    assert save["if"] == ("${{ always() && steps." + restore["id"] + ".outcome == 'success' && hashFiles('"
                          + history_path + "') != '' }}")
    assert "if" not in restore
    # the restore sub-action is pinned to the same commit of actions/cache as the save
    pins = {CACHE_PIN.match(s["uses"]).group(2) for s in (restore, save)}  # type: ignore[union-attr]
    gradle = [s["uses"] for s in workflow["jobs"]["validate"]["steps"] if "gradle" in str(s.get("with", {}).get("path"))]
    assert pins == {CACHE_PIN.match(gradle[0]).group(2)}  # type: ignore[union-attr]


def test_shards_neither_restore_nor_save_the_history(workflow: dict[str, Any]) -> None:
    for name, job in workflow["jobs"].items():
        if name not in ("validate", "merge-and-notify"):
            assert not _cache_steps(job, "restore") and not _cache_steps(job, "save"), name


# ---- what a scheduled run may not touch --------------------------------------------------------------------

def test_a_scheduled_run_never_opens_the_gate(workflow: dict[str, Any]) -> None:
    gate = " ".join(workflow["jobs"]["deploy-frontend"]["if"].split())
    assert "github.event_name == 'workflow_run'" in gate


FAILURE_PATHS = ("validate", "merge-and-notify", "report-unfinished")


@pytest.mark.parametrize("job", FAILURE_PATHS)
def test_the_failure_path_s_own_status_keeps_off_the_gate_on_the_schedule(workflow: dict[str, Any], tmp_path: Path,
                                                                         job: str) -> None:
    [step] = [s for s in workflow["jobs"][job]["steps"] if s.get("name") == "Report a run that did not finish"]
    assert step["env"]["STATUS_CONTEXT"] == (
        "${{ github.event_name == 'schedule' && 'production-validation/scheduled' || 'production-validation' }}")
    env = {"RECORD_DIR": str(tmp_path / "rec"), "SHA": SHA, "GITHUB_REPOSITORY": "org/app",
           "GITHUB_SERVER_URL": "https://github.com", "GITHUB_RUN_ID": "77",
           "STATUS_CONTEXT": "production-validation/scheduled"}
    done, calls = bash(step["run"], tmp_path, "exit 0", **env)  # no harness: gh posts the status itself
    assert done.returncode == 1
    assert "-f context=production-validation/scheduled " in calls[0]


def test_scheduled_and_deployment_runs_never_share_a_concurrency_group(workflow: dict[str, Any]) -> None:
    """GitHub keeps one pending run per group: a scheduled run queued behind a deployment's validation would
    cancel it (and the gate would never open). So the event is part of the group; the two may overlap."""
    assert "${{ github.event_name }}" in workflow["concurrency"]["group"]
    docs = DOCS.read_text()
    assert "overlap" in docs and "evicted" in docs


def test_the_workflow_checks_run_these_tests() -> None:
    tree = ast.parse((REPO / "noxfile.py").read_text())
    workflows = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "workflows")
    assert "tests/e2e/test_workflow_history.py" in ast.unparse(workflows)
