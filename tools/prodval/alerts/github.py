"""GitHub: the commit status that gates the deployment, and the previous run's conclusion.

The status (`POST /repos/{owner}/{repo}/statuses/{sha}`, context `production-validation`) is posted on
the deployed commit for every run, pass or not: branch protection and the frontend deployment can require
it. A scheduled re-validation posts under `<context>/scheduled` instead (notify.configure_channels): it
shows on the commit, and never moves the gate. A `--test` alert uses the context `<check name>/test`, so
it can never open the gate.

The previous run (for recovery messages) is the previous attempt of this run when it is a re-run, else
the newest earlier completed run of the same workflow that passed or failed (cancelled runs say nothing).
That needs `actions: read`; the status needs `statuses: write`.

Outside Actions, the repository's `owner/name` comes from the checkout's `origin` remote.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .. import commands
from ..console import Console
from ..errors import CommandFailed, ToolNotFound
from ..outcomes import Kind, Verdict
from . import Delivery, RetryPolicy, check_url, request
from .message import Alert, clip

API_VERSION = "2022-11-28"
MAX_DESCRIPTION = 140  # GitHub refuses longer descriptions with 422
STATE: dict[str, str] = {Kind.PASS: "success", Kind.RECOVERY: "success", Kind.FAIL: "failure", Kind.ERROR: "error",
                         Kind.TEST: "success"}
CONCLUSION: dict[str, str] = {"success": Verdict.PASS, "failure": Verdict.FAIL, "timed_out": Verdict.ERROR,
                              "startup_failure": Verdict.ERROR}


def headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION}


def owner_name(remote_url: str) -> str:
    """`owner/name` from a remote URL: https://github.com/o/n(.git), git@github.com:o/n.git, ssh://...; else ""."""
    url = remote_url.strip()
    if "://" in url:
        parts = urlsplit(url)
        path = parts.path if parts.hostname else ""  # file:///srv/app.git names no repository
    else:  # scp-like `[user@]host:path`; a local path has no `host:`
        scp = re.fullmatch(r"(?:[^@/]+@)?[^@/:]+:(.+)", url)
        path = scp.group(1) if scp else ""
    segments = path.rstrip("/").removesuffix(".git").strip("/").split("/")
    return "/".join(segments[-2:]) if len(segments) >= 2 and all(segments[-2:]) else ""


def origin_repository(folder: Path, environ: Mapping[str, str]) -> str:
    """`owner/name` of the `origin` remote of the checkout at `folder`; "" without git, a checkout or origin."""
    try:
        git = commands.find_tool("git", [("PATH", "git")], install="install git")
        done = commands.run(Console(environ), [git, "-C", folder, "config", "--get", "remote.origin.url"],
                            check=False, env=environ, timeout=10, stage="notify", echo=False)
    except (ToolNotFound, CommandFailed):  # with check=False, CommandFailed means it timed out
        return ""
    return owner_name(done.stdout) if done.returncode == 0 else ""


def explain_status(status: int, body: str) -> str:
    if status == 401:
        return "GITHUB_TOKEN is invalid or expired"
    if status == 403:
        return "the token may not write commit statuses: give the job `permissions: statuses: write`"
    if status == 404:
        return "check GITHUB_REPOSITORY and GITHUB_API_URL, and that the token can see the repository"
    if status == 422 and "No commit found for SHA" in body:
        return "the deployed commit is not in the repository: check notify.deployed_sha (or GITHUB_SHA)"
    if status == 422:  # the status itself: a description, state or target_url GitHub refuses is our bug
        return "GitHub refused the status's fields (its answer says which): please report this as a prodval bug"
    return f"check GITHUB_TOKEN, GITHUB_REPOSITORY and GITHUB_API_URL (GitHub answered HTTP {status})"


def explain_runs(status: int, body: str) -> str:
    if status in (401, 403):
        return "reading the previous run needs `permissions: actions: read` for GITHUB_TOKEN"
    return "check GITHUB_REPOSITORY, GITHUB_RUN_ID and GITHUB_API_URL"


@dataclass(frozen=True)
class CommitStatus:
    api_url: str
    repository: str
    sha: str
    token: str
    context: str = "production-validation"
    name: str = "github-status"

    def target(self) -> str:
        return f"commit status '{self.context}' on {self.repository}@{self.sha[:12]}"

    def body(self, alert: Alert) -> dict[str, Any]:
        url = next((link.url for link in alert.links), "")
        body: dict[str, Any] = {
            "state": STATE[alert.kind],
            "description": clip(alert.headline, MAX_DESCRIPTION),
            "context": f"{self.context}/test" if alert.kind == Kind.TEST else self.context,
        }
        if url:
            body["target_url"] = url
        return body

    def preview(self, alert: Alert) -> str:
        return f"POST /repos/{self.repository}/statuses/{self.sha}\n" + json.dumps(self.body(alert), indent=2)

    def check(self) -> None:
        check_url(self.api_url, "GITHUB_API_URL")

    def send(self, alert: Alert, policy: RetryPolicy) -> Delivery:
        url = f"{self.api_url.rstrip('/')}/repos/{self.repository}/statuses/{self.sha}"
        body = self.body(alert)
        answer = request("POST", url, what="GitHub commit status API", policy=policy, payload=body,
                         headers=headers(self.token), explain=explain_status, ok_statuses=(201,),
                         setting="GITHUB_API_URL")
        return Delivery(self.name, alert.kind, True, f"{body['state']} posted (HTTP {answer.status})", self.target(),
                        answer.attempts, answer.status)


def previous_verdict(api_url: str, repository: str, run_id: str, run_attempt: int, token: str,
                     policy: RetryPolicy) -> str | None:
    """'pass', 'fail' or 'error' for the run before this one, None when there is none worth telling.

    Raises DeliveryFailed when the API cannot be read.
    """
    actions = f"{api_url.rstrip('/')}/repos/{repository}/actions"

    def get(path: str, params: Mapping[str, str] | None = None) -> Any:
        return request("GET", f"{actions}/{path}", what="GitHub Actions API", policy=policy, ok_statuses=(200,),
                       headers=headers(token), params=params, explain=explain_runs, setting="GITHUB_API_URL").json() or {}

    if run_attempt > 1:
        verdict = CONCLUSION.get(str(get(f"runs/{run_id}/attempts/{run_attempt - 1}").get("conclusion")))
        if verdict:
            return verdict
    current = get(f"runs/{run_id}")
    workflow_id = current.get("workflow_id")
    if workflow_id is None:
        return None
    listing = get(f"workflows/{workflow_id}/runs", {"status": "completed", "per_page": "30", "exclude_pull_requests": "true"})
    started = str(current.get("created_at") or "")
    for run in listing.get("workflow_runs", []):
        if str(run.get("id")) == str(run_id) or (started and str(run.get("created_at") or "") > started):
            continue
        verdict = CONCLUSION.get(str(run.get("conclusion")))
        if verdict:
            return verdict
    return None
