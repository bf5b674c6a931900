"""Flows as Maestro reads them: selection (Java globs, configs, executionOrder, --config, a single file),
appId as an expression, and lint-flows on Maestro's idioms. Minimal flows written for each real pattern."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import write
from prodval import cli, jsexpr
from prodval.errors import ConfigError, FlowError
from prodval.flowlint import lint
from prodval.flows import discover, java_glob
from prodval.schedule import check_execution_order, order_flows, stop_reason

APP = "appId: com.example.exerciselog\n"
BODY = "---\n- launchApp\n"


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path / ".maestro"


def names(folder: Path, **kwargs: object) -> list[str]:
    return [f.file_name for f in discover(folder, **kwargs).flows]  # type: ignore[arg-type]


# selection -----------------------------------------------------------------------------------------------
def test_double_star_glob_needs_a_folder_and_brace_groups_work(ws: Path) -> None:
    for name in ("top.yaml", "auth/login.yaml", "auth/deep/reset.yaml", "cart/add.yaml", "misc/other.yaml"):
        write(ws / name, APP + BODY)
    write(ws / "config.yaml", "flows:\n  - '**/*.yaml'\n")
    assert names(ws) == ["auth/deep/reset.yaml", "auth/login.yaml", "cart/add.yaml", "misc/other.yaml"]
    write(ws / "config.yaml", "flows:\n  - '{auth,cart}/*'\n")
    assert names(ws) == ["auth/login.yaml", "cart/add.yaml"]
    write(ws / "config.yaml", "flows:\n  - '*'\n  - 'auth/**'\n")
    assert names(ws) == ["auth/deep/reset.yaml", "auth/login.yaml", "top.yaml"]
    assert java_glob("a/[!x]?.yaml").fullmatch("a/yz.yaml") and not java_glob("*.yaml").fullmatch("a/b.yaml")


def test_configs_at_any_depth_and_config_content_are_never_flows(ws: Path) -> None:
    write(ws / "login.yaml", APP + BODY)
    write(ws / "nightly" / "config.yml", "includeTags: [nightly]\n")
    write(ws / "nightly" / "run.yaml", APP + BODY)
    write(ws / "shared-settings.yaml", "executionOrder:\n  continueOnFailure: false\nexcludeTags: [wip]\n")
    write(ws / "config.yaml", "flows: ['**']\n")
    assert names(ws) == ["login.yaml", "nightly/run.yaml"]


def test_config_flag_replaces_the_folders_config(ws: Path, tmp_path: Path) -> None:
    write(ws / "a.yaml", APP + "tags: [smoke]\n" + BODY)
    write(ws / "b.yaml", APP + "tags: [slow]\n" + BODY)
    write(ws / "config.yaml", "excludeTags: [smoke]\n")
    other = write(tmp_path / "ci-config.yaml", "excludeTags: [slow]\n")
    assert names(ws) == ["b.yaml"]
    assert names(ws, config=other) == ["a.yaml"]
    with pytest.raises(ConfigError, match=r"workspace config 'nope\.yaml' does not exist"):
        discover(ws, config=Path("nope.yaml"))


def test_a_single_flow_file_reads_no_config_and_no_tag_filter(ws: Path) -> None:
    flow = write(ws / "a.yaml", APP + "tags: [wip]\n" + BODY)
    write(ws / "config.yaml", "excludeTags: [wip]\nexecutionOrder:\n  flowsOrder: [missing]\n")
    assert names(flow, exclude_tags=("wip",)) == ["a.yaml"]


def test_execution_order_runs_first_in_order_and_names_missing_flows(ws: Path) -> None:
    for name in ("a.yaml", "b.yaml", "c.yaml"):
        write(ws / name, APP + BODY)
    write(ws / "signup.yaml", APP + "name: Sign up\n" + BODY)
    write(ws / "config.yaml", "executionOrder:\n  continueOnFailure: false\n  flowsOrder: [Sign up, c]\n")
    selection = discover(ws)
    assert [f.file_name for f in selection.flows][:2] == ["signup.yaml", "c.yaml"]
    assert selection.sequence == ("signup.yaml", "c.yaml") and selection.continue_on_failure is False
    ordered = order_flows(selection.flows, selection.sequence, {"a.yaml": 10, "b.yaml": 99, "c.yaml": 1})
    assert [f.file_name for f in ordered] == ["signup.yaml", "c.yaml", "b.yaml", "a.yaml"]
    assert stop_reason(selection.flows[0], "failed", selection.sequence, False).startswith(
        "not run: signup.yaml (Sign up), an executionOrder flow, ended failed")
    assert stop_reason(selection.flows[0], "flaky", selection.sequence, False) == ""
    assert stop_reason(selection.flows[0], "failed", selection.sequence, True) == ""
    with pytest.raises(ConfigError, match="cannot run with --devices 2"):
        check_execution_order(selection.sequence, None, 2)
    with pytest.raises(ConfigError, match="cannot run with --shard 1/2"):
        check_execution_order(selection.sequence, (1, 2), 1)
    write(ws / "config.yaml", "executionOrder:\n  flowsOrder: [Sign up, Log in]\n")
    with pytest.raises(FlowError) as info:
        discover(ws)
    assert "executionOrder.flowsOrder names flow(s) this run does not select: Log in" in info.value.problems[0]


# appId -------------------------------------------------------------------------------------------------
def test_app_id_is_evaluated_with_the_runs_variables(ws: Path) -> None:
    write(ws / "plain.yaml", "appId: ${APP_ID}\n" + BODY)
    write(ws / "fallback.yaml", "appId: ${APP_ID || 'com.example.dev'}\n" + BODY)
    write(ws / "header-env.yaml", "appId: ${PACKAGE}\nenv:\n  PACKAGE: ${APP_ID || 'com.example.dev'}.beta\n" + BODY)
    write(ws / "shell.yaml", "appId: ${MAESTRO_APP_ID}\n" + BODY)
    write(ws / "platform.yaml", "appId: \"${maestro.platform == 'ios' ? 'com.x.ios' : 'com.x.android'}\"\n" + BODY)
    write(ws / "script.yaml", "appId: ${pickApp(APP_ID)}\n" + BODY)  # valid for Maestro: not refused, not known
    flows = {f.file_name: f for f in discover(ws, variables={"APP_ID": "com.x", "MAESTRO_APP_ID": "com.y"}).flows}
    assert {k: f.app_id for k, f in flows.items()} == {
        "fallback.yaml": "com.x", "header-env.yaml": "com.x.beta", "plain.yaml": "com.x", "shell.yaml": "com.y",
        "platform.yaml": "com.x.android", "script.yaml": ""}
    assert flows["script.yaml"].app_id_source == "${pickApp(APP_ID)}"
    assert flows["plain.yaml"].app_id_source == "${APP_ID}"


def test_an_empty_app_id_is_a_preflight_error_naming_the_variable_and_the_flag(ws: Path) -> None:
    write(ws / "plain.yaml", "appId: ${APP_ID}\n" + BODY)
    write(ws / "fallback.yaml", "appId: ${APP_ID || 'com.example.dev'}\n" + BODY)
    with pytest.raises(FlowError) as info:
        discover(ws)
    [problem] = info.value.problems
    assert problem.startswith(".maestro/plain.yaml:1: appId '${APP_ID}' is empty because APP_ID is not set: "
                              "pass --env APP_ID=<package>"), problem


def test_js_subset() -> None:
    env = {"A": "x", "FLAG": "true"}
    assert jsexpr.evaluate("A || 'd'", env) == "x"
    assert jsexpr.evaluate("B || 'd'", env) == "d"
    assert jsexpr.evaluate("B ?? (A + '.dev')", env) == "x.dev"
    assert jsexpr.evaluate("FLAG == 'true' ? 'com.a' : 'com.b'", env) == "com.a"
    assert jsexpr.evaluate("!B && A", env) == "x"
    assert jsexpr.evaluate_template("com.${A}.${B}", env).empty
    with pytest.raises(jsexpr.Unsupported):
        jsexpr.evaluate("pick(A)", env)


# lint-flows ----------------------------------------------------------------------------------------------
def test_maestro_idioms_are_not_findings(ws: Path) -> None:
    write(ws / "idioms.yaml", "appId: ${APP_ID || 'com.example.dev'}\n" + """\
---
- launchApp:
    arguments:
      mockServer: ${MOCK_SERVER}
      locale: ${LOCALE || 'en'}
- runFlow:
    when:
      true: ${FLAG == 'true'}
    commands:
      - tapOn: Skip
- tapOn:
    point: ${relativePoint(0.5, 0.9)}
- inputText: ${EMAIL || 'guest@example.com'}
""")
    assert [f.file_name for f in lint(ws).flows] == ["idioms.yaml"]


def test_one_problem_once_with_a_normalised_path(ws: Path) -> None:
    write(ws / "shared" / "greet.yaml", "- inputText: ${GREETING}\n- runFlow: subflows/cleanup.yaml\n")
    write(ws / "shared" / "subflows" / "cleanup.yaml", "- tapOn: Delete\n")
    for name in ("a", "b", "c"):
        write(ws / f"{name}.yaml", APP + "tags: [production]\n---\n- runFlow: flows/../shared/greet.yaml\n")
        write(ws / "flows" / ".keep", "")
    with pytest.raises(FlowError) as info:
        lint(ws)
    problems = sorted(info.value.problems)
    assert len(problems) == 2, problems
    assert problems[0].startswith(".maestro/shared/greet.yaml:1: variable 'GREETING' is never defined")
    assert problems[1].startswith(".maestro/shared/greet.yaml:2: cleanup (runFlow subflows/cleanup.yaml)")
    assert not any("/../" in p for p in problems)


def test_lint_checks_what_a_run_selects(ws: Path, tmp_path: Path) -> None:
    write(ws / "smoke.yaml", APP + "tags: [smoke]\n" + BODY)
    write(ws / "wip.yaml", APP + "tags: [wip]\n---\n- inputText: ${UNSET}\n")
    with pytest.raises(FlowError):
        lint(ws)
    assert [f.file_name for f in lint(ws, exclude_tags=("wip",)).flows] == ["smoke.yaml"]
    assert [f.file_name for f in lint(ws, include_tags=("smoke",)).flows] == ["smoke.yaml"]
    config = write(tmp_path / "ci.yaml", "excludeTags: [wip]\n")
    assert [f.file_name for f in lint(ws, config=config).flows] == ["smoke.yaml"]
    assert cli.lint_flows({"validation": {"flows": str(ws)}}, {"exclude_tags": "wip"}, {}) == 0
    assert cli.lint_flows({"validation": {"flows": str(ws)}}, {"config": str(config)}, {}) == 0
    assert cli.lint_flows({"validation": {"flows": str(ws)}}, {}, {}) == 2


@pytest.mark.parametrize(("script", "expected"), [
    ("A || B && C", "a"),  # JS: A || (B && C) = 'a' || ('' && 'c'); left to right it would be 'c'
    ("B && C || A", "a"),  # ('' && 'c') || 'a'
    ("E || B && C", ""),  # '' || ('' && 'c'): the falsy '' of B && C
    ("E || C && A", "a"),  # '' || ('c' && 'a')
    ("A || B && C ? 'yes' : 'no'", "yes"),
    ("(A || B) && C", "c"),  # parentheses still win
    ("A && B || C && A", "a"),  # ('a' && '') || ('c' && 'a')
    ("U ?? N ?? C", "c"),  # a chain of ?? alone is fine
    ("(U || E) ?? A", ""),  # undefined || '' is '', which is not nullish
    ("U ?? (B || C)", "c"),
])
def test_and_binds_tighter_than_or(script: str, expected: str) -> None:
    env = {"A": "a", "B": "", "C": "c", "E": ""}
    assert jsexpr.evaluate(script, env) == expected
    assert jsexpr.evaluate_template("${" + script + "}", env).text == expected


@pytest.mark.parametrize("script", ["A ?? B || C", "A || B ?? C", "A ?? B && C", "A && B ?? C", "A ?? B ?? C || D"])
def test_nullish_mixed_with_and_or_unparenthesised_is_beyond_the_subset(script: str, ws: Path) -> None:
    """A SyntaxError in JavaScript: not guessed, the appId stays unknown (as for any other unsupported script)."""
    with pytest.raises(jsexpr.Unsupported, match="mixed"):
        jsexpr.evaluate(script, {"A": "a", "B": "b", "C": "c"})
    write(ws / "mixed.yaml", "appId: ${" + script + "}\n" + BODY)
    [flow] = discover(ws, variables={"A": "com.a", "B": "com.b", "C": "com.c", "D": "com.d"}).flows
    assert flow.app_id == "" and flow.app_id_source == "${" + script + "}"
