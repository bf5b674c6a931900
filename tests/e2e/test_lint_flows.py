"""`invoke lint-flows`: the preflight plus variable and production-cleanup checks, without a device."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import write
from prodval import cli
from prodval.errors import ConfigError, FlowError
from prodval.flowlint import expressions, identifiers, is_guard, lint

REPO = Path(__file__).resolve().parents[2]
HEADER = "appId: com.example.exerciselog\n"
GUARD = "    when:\n      true: ${SKIP_DATA_CLEANUP != 'true'}\n"


@pytest.fixture
def flows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / ".maestro"
    write(folder / "subflows" / "cleanup.yaml", HEADER + "---\n- tapOn: Delete\n")
    return folder


def problems(folder: Path, env: tuple[str, ...] = ()) -> list[str]:
    with pytest.raises(FlowError) as info:
        lint(folder, env)
    return info.value.problems


def run_task(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([sys.executable, "-m", "invoke", "--search-root", str(REPO), "lint-flows", *args],
                          cwd=cwd, env={**os.environ, "INVOKE_VALIDATION_REQUIRE_TAGS": "", **env},  # untagged flows
                          capture_output=True, text=True, timeout=60)


# the project's own flows ---------------------------------------------------------------------------------
def test_project_flows_are_clean() -> None:
    done = run_task(REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no problems" in done.stdout
    report = lint(REPO / ".maestro")
    names = [f.file_name for f in report.flows]
    assert "add-exercise-and-see-it-in-list.yml" in names
    assert "launch-and-sign-in-anonymously.yml" in names
    assert len(names) >= 3
    assert all("production" in f.tags for f in report.flows)
    assert any(p.name == "cleanup.yaml" for p in report.sub_flows)


def test_project_flows_mark_the_test_user() -> None:
    launch = (REPO / ".maestro" / "subflows" / "launch-as-test-user.yaml").read_text()
    assert 'isTestUser: "true"' in launch
    assert "${VALIDATION_RUN_ID" in launch


# variables ---------------------------------------------------------------------------------------------
def test_undefined_variable_names_file_line_and_a_close_match(flows: Path) -> None:
    write(flows / "typo.yaml", HEADER + textwrap.dedent("""\
        tags: [production]
        ---
        - launchApp
        - inputText: "Squats ${VALIDATON_RUN_ID}"
        - inputText: "Squats ${VALIDATON_RUN_ID || 'local'}"
        """))
    [problem] = problems(flows)  # the bare use only: with a fallback, undefined is Maestro's idiom
    assert problem.startswith(".maestro/typo.yaml:5: variable 'VALIDATON_RUN_ID' is never defined on any path"), problem
    assert "did you mean 'VALIDATION_RUN_ID'?" in problem
    assert "--env VALIDATON_RUN_ID=" in problem


def test_defined_names_pass(flows: Path) -> None:
    write(flows / "ok.yaml", HEADER + textwrap.dedent("""\
        env:
          USERNAME: ${USERNAME || "anonymous"}
          GREETING: "Hi ${USERNAME}"
        ---
        - launchApp
        - inputText: ${GREETING} ${VALIDATION_RUN_ID} ${SKIP_DATA_CLEANUP}
        - inputText: ${MAESTRO_FILENAME} ${MAESTRO_DEVICE_UDID} ${MAESTRO_SHARD_INDEX} ${MAESTRO_MY_SHELL_VAR}
        - inputText: ${output.total + 1} ${maestro.copiedText} ${faker.name().firstName()}
        - inputText: '${JSON.stringify({count: 2, label: "x y"})} ${Math.max(1, 2)}'
        - evalScript: ${COUNTER = 3}
        - inputText: ${COUNTER * 2}
        - runFlow:
            env:
              ITEM: "Plank"
            commands:
              - inputText: ${ITEM}
        - runScript:
            file: setup.js
            env:
              WHO: ${USERNAME}
        """))
    write(flows / "setup.js", "output.ready = true\n")
    report = lint(flows)
    assert [f.file_name for f in report.flows] == ["ok.yaml"]


def test_names_a_retry_sub_flow_assigns_count_as_runflow_ones_do(flows: Path) -> None:
    write(flows / "subflows" / "sign-in.yaml", HEADER + "---\n- evalScript: ${SESSION = 'abc'}\n")
    write(flows / "retrying.yaml", HEADER + textwrap.dedent("""\
        ---
        - retry:
            maxRetries: 2
            file: subflows/sign-in.yaml
        - inputText: ${SESSION}
        """))
    assert [f.file_name for f in lint(flows).flows] == ["retrying.yaml"]


def test_string_literals_and_property_names_are_not_variables() -> None:
    assert identifiers('NAME || "default value"') == ["NAME"]
    assert identifiers("output.user.name + 'x'") == ["output"]
    assert identifiers("{count: N, label: 'a'}") == ["N"]
    assert identifiers("A ? B : 'c'") == ["A", "B"]
    assert identifiers("items[0].length > 2") == ["items"]
    assert [body for _, body in expressions("a ${X} b ${ {k: '}'}.k } c")] == ["X", " {k: '}'}.k "]


def test_configured_env_and_flag_define_variables(flows: Path) -> None:
    write(flows / "api.yaml", HEADER + "---\n- openLink: ${API_BASE_URL}/health\n")
    [problem] = problems(flows)
    assert problem.startswith(".maestro/api.yaml:3: variable 'API_BASE_URL' is never defined")
    assert lint(flows, ("API_BASE_URL",)).flows
    # through the entry point: validation.env in invoke.yaml, and --env
    section = {"flows": str(flows), "env": {"API_BASE_URL": "https://api.example.com"}}
    assert cli.lint_flows({"validation": section}, {}, {}) == 0
    assert cli.lint_flows({"validation": {"flows": str(flows)}}, {"env": ["API_BASE_URL=https://x"]}, {}) == 0
    assert cli.lint_flows({"validation": {"flows": str(flows)}}, {}, {}) == 2


def test_runflow_env_reaches_the_sub_flow_and_a_name_no_route_defines_is_reported(flows: Path) -> None:
    write(flows / "subflows" / "add.yaml", HEADER + "---\n- tapOn: Add exercise\n- inputText: ${EXERCISE_NAME}\n")
    write(flows / "bad.yaml", HEADER + "---\n- runFlow: subflows/add.yaml\n")
    [problem] = problems(flows)
    assert problem.startswith(".maestro/subflows/add.yaml:4: variable 'EXERCISE_NAME' is never defined"), problem
    assert problem.endswith("(reached through .maestro/bad.yaml:3)")
    # one route that defines it is enough: Maestro leaves it undefined on the other on purpose (optional)
    write(flows / "good.yaml", HEADER + textwrap.dedent("""\
        ---
        - runFlow:
            file: subflows/add.yaml
            env:
              EXERCISE_NAME: Squats
        """))
    assert lint(flows).flows
    (flows / "good.yaml").unlink()
    [problem] = problems(flows)
    assert problem.startswith(".maestro/subflows/add.yaml:4: variable 'EXERCISE_NAME' is never defined"), problem
    assert problem.endswith("(reached through .maestro/bad.yaml:3)")


def test_block_scalar_lines_point_at_the_expression(flows: Path) -> None:
    write(flows / "script.yaml", HEADER + textwrap.dedent("""\
        ---
        - evalScript: |
            ${
              output.a = 1
            }
        - inputText: |
            first line
            then ${MISSING}
        """))
    [problem] = problems(flows)
    assert problem.startswith(".maestro/script.yaml:9: variable 'MISSING'"), problem


# cleanup in production ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("commands", "line", "what"),
    [
        ("- runFlow: subflows/cleanup.yaml\n", 4, "runFlow subflows/cleanup.yaml"),
        ("- runFlow:\n    file: subflows/cleanup.yaml\n", 4, "runFlow subflows/cleanup.yaml"),
        ("- runScript: scripts/clean-up-user.js\n", 4, "runScript scripts/clean-up-user.js"),
        ("- tapOn:\n    text: Delete\n    label: Clean up the exercise\n", 4, "tapOn labelled 'Clean up the exercise'"),
        # `||` lets cleanup run whenever the other side is true
        ("- runFlow:\n    when:\n      true: ${SKIP_DATA_CLEANUP != 'true' || MAESTRO_FORCE}\n"
         "    file: subflows/cleanup.yaml\n", 4, "runFlow subflows/cleanup.yaml"),
        # a guard on something else is no guard
        ("- runFlow:\n    when:\n      visible: Delete\n    file: subflows/cleanup.yaml\n", 4,
         "runFlow subflows/cleanup.yaml"),
    ],
)
def test_unguarded_cleanup_in_production_is_an_error(flows: Path, commands: str, line: int, what: str) -> None:
    write(flows / "scripts" / "clean-up-user.js", "http.delete('https://api.example.com/me')\n")
    write(flows / "prod.yaml", HEADER + "tags: [production]\n---\n- launchApp\n" + commands)
    [problem] = problems(flows)
    assert problem.startswith(f".maestro/prod.yaml:{line + 1}: cleanup ({what}) in a flow tagged 'production' "
                              "is not guarded"), problem
    assert "SKIP_DATA_CLEANUP != 'true'" in problem


@pytest.mark.parametrize(
    "commands",
    [
        "- runFlow:\n" + GUARD + "    file: subflows/cleanup.yaml\n",
        '- runFlow:\n    when:\n      true: ${"true" !== SKIP_DATA_CLEANUP && MAESTRO_PLATFORM != "ios"}\n'
        "    file: subflows/cleanup.yaml\n",
        # a guard on an enclosing runFlow covers everything inside
        "- runFlow:\n" + GUARD + "    commands:\n      - runFlow: subflows/cleanup.yaml\n",
        # resetting the app on the device is not cleanup of production data
        "- launchApp:\n    clearState: true\n    clearKeychain: true\n- clearState\n",
    ],
)
def test_guarded_cleanup_and_device_resets_pass(flows: Path, commands: str) -> None:
    write(flows / "prod.yaml", HEADER + "tags: [production]\n---\n- launchApp\n" + commands)
    assert lint(flows).flows


def test_cleanup_in_flows_no_production_run_selects_is_allowed(flows: Path) -> None:
    # every flow a run selects is checked, whatever its tags (tests/e2e/test_flags_and_config.py); one the
    # workspace's includeTags leave out never runs against production
    write(flows / "config.yaml", "includeTags: [production]\n")
    write(flows / "prod.yaml", HEADER + "tags: [production]\n---\n- launchApp\n")
    write(flows / "nightly.yaml", HEADER + "tags: [nightly]\n---\n- runFlow: subflows/cleanup.yaml\n")
    assert [f.file_name for f in lint(flows).flows] == ["prod.yaml"]


def test_cleanup_hidden_in_a_sub_flow_or_a_hook_is_found(flows: Path) -> None:
    write(flows / "subflows" / "teardown.yaml", HEADER + "---\n- runFlow: cleanup.yaml\n")
    write(flows / "a.yaml", HEADER + "tags: [production]\n---\n- runFlow: subflows/teardown.yaml\n")
    write(flows / "b.yaml", HEADER + "tags: [production]\nonFlowComplete:\n  - runFlow: subflows/cleanup.yaml\n"
          "---\n- launchApp\n")
    write(flows / "c.yaml", HEADER + "tags: [production]\n---\n- runFlow:\n" + GUARD
          + "    file: subflows/teardown.yaml\n")
    found = problems(flows)
    assert len(found) == 2, found
    assert found[0].startswith(".maestro/subflows/teardown.yaml:3: cleanup (runFlow cleanup.yaml)")
    assert found[0].endswith("(reached through .maestro/a.yaml:4)")
    assert found[1].startswith(".maestro/b.yaml:4: cleanup (runFlow subflows/cleanup.yaml)")


def test_each_flow_file_is_read_once(flows: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # b.yaml is a flow and a sub-flow of a.yaml; teardown.yaml and finish.yaml are reached twice each.
    write(flows / "subflows" / "finish.yaml", HEADER + "---\n- launchApp\n")  # not cleanup: every flow here runs
    write(flows / "subflows" / "teardown.yaml", HEADER + "---\n- runFlow: finish.yaml\n")
    write(flows / "a.yaml", HEADER + "---\n- runFlow: subflows/teardown.yaml\n- runFlow: b.yaml\n")
    write(flows / "b.yaml", HEADER + "onFlowComplete:\n  - runFlow: subflows/finish.yaml\n"
          "---\n- runFlow: subflows/teardown.yaml\n")
    reads: Counter[Path] = Counter()
    read_text = Path.read_text

    def counting(self: Path, *args: Any, **kwargs: Any) -> str:
        reads[self.resolve()] += 1
        return read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", counting)
    report = lint(flows)
    assert [p.name for p in report.sub_flows] == ["finish.yaml", "teardown.yaml"]
    names = ("a.yaml", "b.yaml", "subflows/teardown.yaml", "subflows/finish.yaml")
    assert reads == {(flows / name).resolve(): 1 for name in names}


def test_guard_expressions() -> None:
    assert is_guard("${SKIP_DATA_CLEANUP != 'true'}")
    assert is_guard('${SKIP_DATA_CLEANUP!=="true"}')
    assert is_guard("${'true' != SKIP_DATA_CLEANUP && A}")
    assert not is_guard("${SKIP_DATA_CLEANUP == 'true'}")
    assert not is_guard("${SKIP_DATA_CLEANUP != 'false'}")
    assert not is_guard("SKIP_DATA_CLEANUP != 'true'")  # not an expression: Maestro reads it as text
    assert not is_guard("${SKIP_DATA_CLEANUP != 'true' || A}")


# the preflight, through the task -----------------------------------------------------------------------
def test_task_reports_every_problem_and_exits_2(tmp_path: Path) -> None:
    folder = tmp_path / ".maestro"
    write(folder / "config.yaml", "includeTags: [production]\n")
    write(folder / "broken.yaml", HEADER + "tags: [nightly]\n---\n- tapOn: [unclosed\n")  # not run in production
    write(folder / "headless.yaml", "- launchApp\n")
    write(folder / "missing.yaml", HEADER + "tags: [production]\n---\n- runFlow: subflows/nope.yaml\n")
    write(folder / "vars.yaml", HEADER + "tags: [production]\n---\n- inputText: ${NOPE}\n")
    done = run_task(tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("error: .maestro/")]
    assert [ln.split(":")[1].strip() + ":" + ln.split(":")[2] for ln in lines] == [
        ".maestro/broken.yaml:4", ".maestro/headless.yaml:1", ".maestro/missing.yaml:4", ".maestro/vars.yaml:4",
    ], done.stderr
    assert "4 problem(s) in the flows" in done.stdout


def test_task_annotates_lines_in_github_actions(tmp_path: Path) -> None:
    write(tmp_path / ".maestro" / "vars.yaml", HEADER + "---\n- launchApp\n- inputText: ${NOPE}\n")
    done = run_task(tmp_path, GITHUB_ACTIONS="true")
    assert done.returncode == 2
    assert "::error file=.maestro/vars.yaml,line=4,title=lint-flows::variable 'NOPE' is never defined" in done.stdout


def test_no_flows_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no flow found"):
        lint(tmp_path / "empty")
    done = run_task(tmp_path, "--flows", "missing")
    assert done.returncode == 2
    assert "does not exist" in done.stderr


@pytest.mark.parametrize("assigning", ["a-assigns.yaml", "z-assigns.yaml"])
def test_a_name_one_flow_assigns_does_not_excuse_another(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         assigning: str) -> None:
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / ".maestro"
    write(folder / assigning, HEADER + "---\n- evalScript: ${TOKEN_X = 'abc'}\n- inputText: ${TOKEN_X}\n")
    write(folder / "m-uses.yaml", HEADER + "---\n- inputText: ${TOKEN_X}\n")
    write(folder / "subflows" / "set.yaml", HEADER + "---\n- evalScript: ${SUB_TOKEN = 'x'}\n")
    write(folder / "n-via-sub.yaml", HEADER + "---\n- runFlow: subflows/set.yaml\n- inputText: ${SUB_TOKEN}\n")
    with pytest.raises(FlowError) as info:
        lint(folder)
    assert info.value.problems == [
        ".maestro/m-uses.yaml:3: variable 'TOKEN_X' is never defined on any path to this line, so Maestro would "
        "use the text 'undefined': pass it with --env TOKEN_X=... (or validation.env in invoke.yaml), define it in "
        "the flow's env: or the calling runFlow's env:, or write ${TOKEN_X || 'default'} if it is optional (the "
        "harness passes SKIP_DATA_CLEANUP, VALIDATION_RUN_ID and those with -e)"]
