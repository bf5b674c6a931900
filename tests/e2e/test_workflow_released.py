"""The released app of impact triage, in the production workflow: which runs upload it, and which artifact
the next runs download as the app users have.

- The upload steps must open exactly when the gate (`deploy-frontend`) opens: their `if:` expressions and
  the gate's are evaluated, by a small evaluator of GitHub's expression syntax, for every event, with and
  without include-tags, every verdict and a cancel. A scheduled, manual or include-tags run never uploads.
- The download steps' `run:` scripts run under bash against a fake `gh` that answers the two REST endpoints
  the way GitHub does (the artifacts list holds every run's artifacts, pull requests' and forks' included;
  the workflow-runs list filters by workflow file, branch and conclusion) and evaluates `--jq` with jq, as
  on GitHub's runners. An artifact of that name from a pull request, a fork, another workflow, a manual or
  scheduled run or a failed run is never taken, however new.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from itertools import product
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PRODUCTION = REPO / ".github" / "workflows" / "production-validation.yml"
DOCS = REPO / "docs" / "workflow.md"
ARTIFACT = "production-validation-released-apk"
DOWNLOAD = "Download the released app (the last passing run's APK)"
UPLOAD = "Upload the APK as the released app"
THIS_REPO = {"id": 1, "full_name": "org/app"}
FORK = {"id": 2, "full_name": "mallory/app"}
THIS_WORKFLOW = ".github/workflows/production-validation.yml"


@pytest.fixture(scope="module")
def jobs() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(PRODUCTION.read_text())
    return data["jobs"]  # type: ignore[no-any-return]


def named(job: dict[str, Any], name: str) -> dict[str, Any]:
    [found] = [s for s in job["steps"] if s.get("name") == name]
    return found


# ---- GitHub's expression syntax, the part the workflow's `if:`s use ----------------------------------------

TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>\d+(?:\.\d+)?)|(?P<op>&&|\|\||==|!=|[!(),])"
                   r"|(?P<name>[A-Za-z_][\w.-]*))")


def evaluate(expression: str, context: dict[str, Any], status: dict[str, bool]) -> Any:
    """Evaluate an `if:` (with or without `${{ }}`) as GitHub does: `!` binds tightest, then `==`/`!=`, then
    `&&`, then `||`; `&&`/`||` return an operand; a missing property is null; strings compare ignoring case;
    falsy are false, 0, '' and null. `status` gives success(), failure(), cancelled(), always()."""
    text = expression.strip()
    if text.startswith("${{") and text.endswith("}}"):
        text = text[3:-2]
    tokens: list[tuple[str, str]] = []
    at = 0
    while text[at:].strip():
        match = TOKEN.match(text, at)
        assert match and match.lastgroup, f"cannot read {text[at:]!r}"
        tokens.append((match.lastgroup, match.group(match.lastgroup)))
        at = match.end()
    position = 0

    def peek() -> str:
        return tokens[position][1] if position < len(tokens) else ""

    def take(expected: str | None = None) -> tuple[str, str]:
        nonlocal position
        token = tokens[position]
        assert expected is None or token[1] == expected, f"expected {expected!r} in {text!r}"
        position += 1
        return token

    def truthy(value: Any) -> bool:
        return value not in (False, 0, "", None)

    def either() -> Any:
        value = both()
        while peek() == "||":
            take()
            right = both()
            value = value if truthy(value) else right
        return value

    def both() -> Any:
        value = compare()
        while peek() == "&&":
            take()
            right = compare()
            value = right if truthy(value) else value
        return value

    def compare() -> Any:
        left = unary()
        if peek() in ("==", "!="):
            operator = take()[1]
            right = unary()
            if isinstance(left, str) and isinstance(right, str):
                equal = left.lower() == right.lower()
            else:
                equal = type(left) is type(right) and left == right
            return equal if operator == "==" else not equal
        return left

    def unary() -> Any:
        if peek() == "!":
            take()
            return not truthy(unary())
        return primary()

    def primary() -> Any:
        kind, value = take()
        if value == "(":
            inner = either()
            take(")")
            return inner
        if kind == "str":
            return value[1:-1].replace("''", "'")
        if kind == "num":
            return float(value)
        assert kind == "name", f"unexpected {value!r} in {text!r}"
        if peek() == "(":
            take("(")
            take(")")
            return status[value]
        if value in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[value]
        node: Any = context
        for part in value.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        return node

    result = either()
    assert position == len(tokens), f"trailing tokens in {text!r}"
    return result


def test_the_evaluator_reads_github_s_syntax() -> None:
    context = {"github": {"event_name": "schedule"}, "inputs": {"include-tags": "smoke"}, "needs": {}}
    ok = {"success": True, "failure": False, "cancelled": False, "always": True}
    assert evaluate("${{ github.event_name == 'SCHEDULE' }}", context, ok) is True
    assert evaluate("!inputs.include-tags", context, ok) is False
    assert evaluate("!needs.validate.outputs.verdict", context, ok) is True  # missing: null
    assert evaluate("!cancelled() && github.event_name != 'schedule' || 'x'", context, ok) == "x"
    assert evaluate("(github.event_name == 'push' || inputs.include-tags) && 1", context, ok) == 1.0


# ---- 1. the upload opens exactly when the gate does --------------------------------------------------------

EVENTS = ("workflow_run", "schedule", "workflow_dispatch", "push")  # push: a caller's event (workflow_call)
VERDICTS = ("pass", "fail", "error")


def _situations() -> list[tuple[str, str, str, bool]]:
    return [(event, tags, verdict, cancelled)
            for event, tags, verdict, cancelled in product(EVENTS, ("", "smoke"), VERDICTS, (False, True))]


def _context(path: str, event: str, tags: str, verdict: str, cancelled: bool) -> tuple[dict[str, Any], dict[str, bool]]:
    """The contexts of one run on the single-runner (`validate`) or sharded (`merge-and-notify`) path, as the
    upload step of that job and the gate job see them."""
    passed = verdict == "pass" and not cancelled
    result = "cancelled" if cancelled else ("success" if passed else "failure")
    own = {"result": result, "outputs": {"verdict": verdict}}
    skipped: dict[str, Any] = {"result": "skipped", "outputs": {}}
    context = {
        "github": {"event_name": event, "ref": "refs/heads/main", "repository": "org/app"},
        # after a deployment `inputs` is empty; a dispatch or a call has its inputs
        "inputs": {} if event == "workflow_run" and not tags else {"include-tags": tags, "shards": 1},
        "steps": {"chain" if path == "validate" else "merge": {"outputs": {"verdict": verdict}}},
        "needs": {"validate": own if path == "validate" else skipped,
                  "merge-and-notify": own if path == "merge-and-notify" else skipped},
    }
    # at the upload: the chain (or merge) step exits 0 only on pass; a cancel is no success
    status = {"success": passed, "failure": not passed and not cancelled, "cancelled": cancelled, "always": True}
    return context, status


@pytest.mark.parametrize("path", ["validate", "merge-and-notify"])
def test_the_released_app_is_uploaded_exactly_when_the_gate_opens(jobs: dict[str, Any], path: str) -> None:
    gate = jobs["deploy-frontend"]["if"]
    steps = [named(jobs[path], UPLOAD)]
    if path == "merge-and-notify":
        steps.append(named(jobs[path], "Download the build's APK"))  # the sharded path fetches the build first
    for event, tags, verdict, cancelled in _situations():
        context, status = _context(path, event, tags, verdict, cancelled)
        # the gate job itself runs after the validation jobs: its own status functions see a finished run
        opens = bool(evaluate(gate, context, {**status, "success": not cancelled, "failure": False}))
        for step in steps:
            uploads = bool(evaluate(step["if"], context, status))
            assert uploads == opens, (step["name"], event, tags, verdict, cancelled)
    # spelled out: a pass the gate never deploys (schedule, manual, include-tags, a push caller) uploads nothing
    for event, tags in (("schedule", ""), ("workflow_dispatch", ""), ("workflow_run", "smoke"), ("push", "")):
        context, status = _context(path, event, tags, "pass", False)
        assert not evaluate(named(jobs[path], UPLOAD)["if"], context, status), (event, tags)
    context, status = _context(path, "workflow_run", "", "pass", False)
    assert evaluate(named(jobs[path], UPLOAD)["if"], context, status)  # a deployment's pass does


def test_the_upload_keeps_its_artifact(jobs: dict[str, Any]) -> None:
    for path in ("validate", "merge-and-notify"):
        upload = named(jobs[path], UPLOAD)
        assert upload["with"]["name"] == ARTIFACT and upload["with"]["overwrite"] is True
    assert named(jobs["validate"], UPLOAD)["with"]["path"] == "build/validation/*.apk"
    assert named(jobs["merge-and-notify"], UPLOAD)["with"]["path"] == "build/apk/*.apk"


# ---- 2. the download takes only a passing production run's artifact -----------------------------------------

FAKE_GH = r'''#!/usr/bin/env python3
"""gh, as far as the released-app step uses it: `gh api PATH --jq EXPR` (the artifacts list and a workflow's
runs, filtered as the REST API does, newest first) and `gh run download RUN --name NAME --dir DIR`."""
import json, os, subprocess, sys
from urllib.parse import parse_qs, urlsplit

data = json.load(open(os.environ["FAKE_GH_DATA"]))
args = sys.argv[1:]
with open(os.environ["FAKE_GH_LOG"], "a") as log:
    log.write(json.dumps(args) + "\n")
if data.get("down"):
    sys.stderr.write("error connecting to api.github.com\n")
    sys.exit(1)


def jq(value):
    expression = args[args.index("--jq") + 1]
    done = subprocess.run(["jq", "-r", expression], input=json.dumps(value), capture_output=True, text=True)
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)
    sys.exit(done.returncode)


if args[0] == "api":
    url = urlsplit(args[1])
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    parts = url.path.split("/")
    per_page = int(query.get("per_page", 30))
    if parts[:2] != ["repos", "org"] or parts[2] != "app":
        sys.stderr.write("gh: Not Found (HTTP 404)\n")
        sys.exit(1)
    if parts[3:] == ["actions", "artifacts"]:
        found = [a for a in data["artifacts"] if "name" not in query or a["name"] == query["name"]]
        jq({"total_count": len(found), "artifacts": found[:per_page]})
    if parts[3:5] == ["actions", "workflows"] and parts[6:] == ["runs"]:
        runs = [r for r in data["runs"] if r["path"].rsplit("/", 1)[-1] == parts[5]
                and query.get("branch", r["head_branch"]) == r["head_branch"]
                and query.get("event", r["event"]) == r["event"]
                and query.get("status") in (None, r["status"], r["conclusion"])]
        jq({"total_count": len(runs), "workflow_runs": runs[:per_page]})
    sys.stderr.write("gh: Not Found (HTTP 404)\n")
    sys.exit(1)
if args[:2] == ["run", "download"]:
    run, name, folder = args[2], args[args.index("--name") + 1], args[args.index("--dir") + 1]
    for artifact in data["artifacts"]:
        if str(artifact["workflow_run"]["id"]) == run and artifact["name"] == name and not artifact["expired"]:
            os.makedirs(folder, exist_ok=True)
            open(os.path.join(folder, "app-release.apk"), "w").write(f"APK of run {run}\n")
            sys.exit(0)
    sys.stderr.write("no valid artifacts found to download\n")
    sys.exit(1)
sys.stderr.write(f"fake gh: unexpected call {args}\n")
sys.exit(2)
'''


def run_entry(run_id: int, *, event: str = "workflow_run", branch: str = "main", conclusion: str = "success",
              workflow: str = THIS_WORKFLOW, head: dict[str, Any] | None = None) -> dict[str, Any]:
    """One workflow run, as GET /repos/{owner}/{repo}/actions/workflows/{id}/runs lists it."""
    return {"id": run_id, "path": workflow, "event": event, "head_branch": branch, "status": "completed",
            "conclusion": conclusion, "head_repository": head or THIS_REPO, "repository": THIS_REPO}


def artifact_of(run: dict[str, Any], *, expired: bool = False, name: str = ARTIFACT) -> dict[str, Any]:
    """That run's artifact, as GET /repos/{owner}/{repo}/actions/artifacts lists it (its workflow_run part)."""
    return {"id": run["id"] * 10, "name": name, "expired": expired,
            "workflow_run": {"id": run["id"], "repository_id": run["repository"]["id"],
                             "head_repository_id": run["head_repository"]["id"], "head_branch": run["head_branch"],
                             "head_sha": "0" * 40}}


# Each uploads an artifact named production-validation-released-apk, newer than the last passing deployment.
POISONED = {
    # a fork's pull request edits this very workflow to upload its own APK, from the fork's `main`
    "fork-pull-request": lambda: run_entry(90, event="pull_request", head=FORK),
    # a run whose head repository is a fork (its branch named main too): a second lock, as GitHub runs
    # workflow_run and push runs of this workflow on this repository
    "fork-workflow-run": lambda: run_entry(90, head=FORK),
    # a pull request from a branch of this repository
    "pull-request": lambda: run_entry(90, event="pull_request", branch="bump-deps"),
    # pull_request_target runs the base branch's file, but for a pull request
    "pull-request-target": lambda: run_entry(90, event="pull_request_target"),
    # another workflow of this repository, on main
    "other-workflow": lambda: run_entry(90, event="push", workflow=".github/workflows/release.yml"),
    # this workflow, started by hand or by the schedule: the gate never deployed it
    "manual-run": lambda: run_entry(90, event="workflow_dispatch"),
    "scheduled-run": lambda: run_entry(90, event="schedule"),
    # this workflow after a deployment, on another branch, or failed (the gate never started the deploy)
    "other-branch": lambda: run_entry(90, branch="staging"),
    "failed-run": lambda: run_entry(90, conclusion="failure"),
}


def released_step(jobs: dict[str, Any], job: str) -> dict[str, Any]:
    return named(jobs[job], DOWNLOAD)


def download(script: str, tmp_path: Path, runs: list[dict[str, Any]], artifacts: list[dict[str, Any]],
             workflow_ref: str = f"org/app/{THIS_WORKFLOW}@refs/heads/main",
             down: bool = False) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
    """Run the step's script as the runner does (bash -e -o pipefail) with the fake gh; (result, gh calls)."""
    if shutil.which("jq") is None:
        pytest.skip("needs jq (as on GitHub's runners) to evaluate the step's --jq filters")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "gh").write_text(FAKE_GH)
    (bin_dir / "gh").chmod(0o755)
    data = tmp_path / "gh.json"
    data.write_text(json.dumps({"runs": runs, "artifacts": artifacts, "down": down}))
    log = tmp_path / "gh.log"
    log.unlink(missing_ok=True)
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "GITHUB_OUTPUT": str(tmp_path / "output"),
           "GITHUB_REPOSITORY": "org/app", "GITHUB_WORKFLOW_REF": workflow_ref, "DEST": "build/released",
           "GH_REPO": "org/app", "FAKE_GH_DATA": str(data), "FAKE_GH_LOG": str(log)}
    done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return done, calls


def downloaded(calls: list[list[str]]) -> list[str]:
    return [call[2] for call in calls if call[:2] == ["run", "download"]]


def test_both_paths_download_the_same_way(jobs: dict[str, Any]) -> None:
    single, shard = released_step(jobs, "validate"), released_step(jobs, "validate-shard")
    assert single["run"] == shard["run"]
    for step in (single, shard):
        assert step["continue-on-error"] is True  # no released app is a warning, never a failed run
        assert step["env"]["GH_REPO"] == "${{ github.repository }}"
    for job in ("validate", "validate-shard"):
        assert jobs[job]["permissions"]["actions"] == "read"  # both endpoints and the download need no more


@pytest.mark.parametrize("job", ["validate", "validate-shard"])
def test_the_newest_passing_deployment_s_apk_is_taken_over_every_newer_poisoned_one(
        jobs: dict[str, Any], tmp_path: Path, job: str) -> None:
    legit = [run_entry(52), run_entry(51)]
    poisoned = [make() for make in POISONED.values()]
    for number, run in enumerate(poisoned):
        run["id"] = 90 + number
    expired = run_entry(60)  # a passing deployment whose artifact expired
    skipped = run_entry(59)  # a passing workflow_run whose jobs were skipped: no artifact at all
    runs = sorted([*legit, *poisoned, expired, skipped], key=lambda r: -r["id"])  # newest first
    artifacts = [artifact_of(r) for r in sorted(poisoned, key=lambda r: -r["id"])]
    artifacts += [artifact_of(expired, expired=True), artifact_of(legit[0]), artifact_of(legit[1])]
    done, calls = download(released_step(jobs, job)["run"], tmp_path, runs, artifacts)
    assert done.returncode == 0, done.stderr
    assert downloaded(calls) == ["52"], calls
    assert (tmp_path / "build" / "released" / "app-release.apk").read_text() == "APK of run 52\n"
    assert (tmp_path / "output").read_text() == "apk=build/released/*.apk\n"
    assert "::warning" not in done.stdout


@pytest.mark.parametrize("kind", sorted(POISONED))
def test_a_poisoned_artifact_is_never_taken(jobs: dict[str, Any], tmp_path: Path, kind: str) -> None:
    """Each kind alone, newest of all: the older passing deployment's APK is taken; without that one, none."""
    poison, legit = POISONED[kind](), run_entry(41)
    script = released_step(jobs, "validate")["run"]
    done, calls = download(script, tmp_path, [poison, legit], [artifact_of(poison), artifact_of(legit)])
    assert done.returncode == 0, done.stderr
    assert downloaded(calls) == ["41"], calls

    (tmp_path / "output").unlink()
    done, calls = download(script, tmp_path, [poison], [artifact_of(poison)])
    assert done.returncode == 0, done.stderr
    assert downloaded(calls) == [], calls
    assert ("::warning title=released app::no passing production run has uploaded its APK yet (a run of "
            "production-validation.yml on main after a deployment or a push): failed flows' impact will be unknown"
            ) in done.stdout
    assert (tmp_path / "output").read_text() == "apk=build/released/*.apk\n"  # validate: impact unknown


def test_the_runs_are_those_of_this_workflow_or_of_its_caller(jobs: dict[str, Any], tmp_path: Path) -> None:
    """Called from another workflow (workflow_call), the artifacts belong to the caller's runs, and
    GITHUB_WORKFLOW_REF names the caller's file: its runs are the ones asked for."""
    caller = ".github/workflows/deploy.yml"
    ours, theirs = run_entry(70), run_entry(71, workflow=caller)
    script = released_step(jobs, "validate")["run"]
    done, calls = download(script, tmp_path, [theirs, ours], [artifact_of(theirs), artifact_of(ours)])
    assert done.returncode == 0, done.stderr
    assert downloaded(calls) == ["70"]
    done, calls = download(script, tmp_path, [theirs, ours], [artifact_of(theirs), artifact_of(ours)],
                           workflow_ref=f"org/app/{caller}@refs/heads/main")
    assert done.returncode == 0, done.stderr
    assert downloaded(calls) == ["71"]
    [runs_url] = [urlsplit(call[1]) for call in calls if call[0] == "api" and "/workflows/" in call[1]]
    assert runs_url.path == "repos/org/app/actions/workflows/deploy.yml/runs"
    assert parse_qs(runs_url.query) == {"branch": ["main"], "status": ["success"], "per_page": ["100"]}


def test_the_api_down_is_a_warning_and_the_impact_unknown(jobs: dict[str, Any], tmp_path: Path) -> None:
    done, calls = download(released_step(jobs, "validate")["run"], tmp_path, [], [], down=True)
    assert done.returncode == 0, done.stderr
    assert downloaded(calls) == []
    assert "::warning title=released app::the Actions API did not answer: failed flows' impact will be unknown" in done.stdout
    assert (tmp_path / "output").read_text() == "apk=build/released/*.apk\n"


def test_the_docs_explain_which_artifact_is_the_released_app() -> None:
    docs = " ".join(DOCS.read_text().split())
    for fact in ("pull request", "fork", "GITHUB_WORKFLOW_REF", "head_repository", "only when the gate opens"):
        assert fact in docs, fact

