"""Flow discovery and preflight, as Maestro discovers flows (no processes involved)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import write
from prodval.errors import ConfigError, FlowError
from prodval.flows import discover

HEADER = "appId: com.example.exerciselog\n"


@pytest.fixture
def flows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / ".maestro"
    write(folder / "b-second.yaml", HEADER + "tags: [production]\n---\n- launchApp\n")
    write(folder / "a-first.yml", HEADER + "name: First flow\ntags: [production, smoke]\n---\n- launchApp\n")
    write(folder / "notes.txt", "not a flow")
    write(folder / "subflows" / "login.yaml", HEADER + "---\n- tapOn: Login\n")
    return folder


def names(folder: Path, *args: tuple[str, ...]) -> list[str]:
    return [f.file_name for f in discover(folder, *args).flows]


def test_top_level_yaml_files_only_sorted(flows: Path) -> None:
    selection = discover(flows)
    assert [f.file_name for f in selection.flows] == ["a-first.yml", "b-second.yaml"]
    assert selection.flows[0].name == "First flow"
    assert selection.flows[1].name == "b-second"
    assert selection.flows[0].tags == ("production", "smoke")


def test_config_yaml_is_not_a_flow_and_its_globs_apply(flows: Path) -> None:
    write(flows / "config.yaml", "flows:\n  - 'subflows/*'\n")
    assert names(flows) == ["subflows/login.yaml"]
    write(flows / "config.yaml", "flows:\n  - '**'\n")
    assert names(flows) == ["a-first.yml", "b-second.yaml", "subflows/login.yaml"]


def test_tags_from_config_and_flags_add_up(flows: Path) -> None:
    write(flows / "config.yaml", "includeTags: [production]\n")
    assert names(flows) == ["a-first.yml", "b-second.yaml"]
    assert names(flows, ("smoke",)) == ["a-first.yml", "b-second.yaml"]  # OR within includes
    assert names(flows, (), ("smoke",)) == ["b-second.yaml"]
    selection = discover(flows, (), ("smoke",))
    assert selection.filtered_out == ["a-first.yml"]


def test_single_file(flows: Path) -> None:
    assert names(flows / "b-second.yaml") == ["b-second.yaml"]


def test_nothing_selected_is_an_error(flows: Path) -> None:
    with pytest.raises(ConfigError, match=r"no flow selected.*2 flow\(s\) filtered out by tags"):
        discover(flows, ("nightly",))
    empty = flows.parent / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match=r"no \*.yaml or \*.yml flow found"):
        discover(empty)
    with pytest.raises(ConfigError, match="does not exist"):
        discover(flows.parent / "missing")


def test_malformed_yaml_names_file_and_line(flows: Path) -> None:
    write(flows / "broken.yaml", HEADER + "---\n- launchApp\n- tapOn: [unclosed\n- back\n")
    with pytest.raises(FlowError) as info:
        discover(flows)
    assert len(info.value.problems) == 1
    problem = info.value.problems[0]
    assert problem.startswith(".maestro/broken.yaml:")
    assert problem.startswith(".maestro/broken.yaml:4: invalid YAML: expected ',' or ']'"), problem
    assert "at line 6, while parsing a flow sequence started on line 4" in problem


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("- launchApp\n", 1, "header is missing"),
        (HEADER, 1, "no commands"),
        ("name: x\n---\n- launchApp\n", 1, "no 'appId'"),
        (HEADER + "---\nlaunchApp: true\n", 3, "must be a list"),
        (HEADER + "---\n- launchApp\n---\n- back\n", 5, "more than two YAML documents"),
        ("", 1, "empty"),
        (HEADER + "---\n- launchApp\n- runFlow: subflows/nope.yaml\n", 4, "'subflows/nope.yaml' does not exist"),
        (HEADER + "---\n- runFlow:\n    when:\n      visible: x\n    file: gone.yaml\n", 6,
         "'gone.yaml' does not exist"),
        (HEADER + "---\n- retry:\n    maxRetries: 2\n    commands:\n      - runScript: setup.js\n", 6,
         "'setup.js' does not exist"),
        (HEADER + "onFlowStart:\n  - runFlow: start.yaml\n---\n- launchApp\n", 3, "'start.yaml' does not exist"),
    ],
)
def test_preflight_problems(flows: Path, text: str, line: int, message: str) -> None:
    write(flows / "bad.yaml", text)
    with pytest.raises(FlowError) as info:
        discover(flows)
    [problem] = info.value.problems
    assert problem.startswith(f".maestro/bad.yaml:{line}: "), problem
    assert message in problem


def test_url_header_and_variable_file_references_are_accepted(flows: Path) -> None:
    write(flows / "web.yaml", "url: https://example.com\n---\n- runFlow: ${SETUP_FLOW}\n")
    assert "web.yaml" in names(flows)


def test_sub_flows_are_checked_recursively_once(flows: Path) -> None:
    write(flows / "subflows" / "loop.yaml", HEADER + "---\n- runFlow: loop.yaml\n- runFlow: missing.yaml\n")
    write(flows / "c.yaml", HEADER + "---\n- runFlow: subflows/loop.yaml\n")
    with pytest.raises(FlowError) as info:
        discover(flows)
    assert info.value.problems == [
        ".maestro/subflows/loop.yaml:4: 'missing.yaml' does not exist "
        f"(looked for {(flows / 'subflows' / 'missing.yaml').resolve()})"
    ]


def test_a_broken_sub_flow_is_reported_for_each_flow_that_runs_it(flows: Path) -> None:
    write(flows / "subflows" / "broken.yaml", HEADER + "---\n- tapOn: [unclosed\n")
    for name in ("c.yaml", "d.yaml"):
        write(flows / name, HEADER + "---\n- runFlow: subflows/broken.yaml\n")
    with pytest.raises(FlowError) as info:
        discover(flows)
    assert [p.split(": ")[0] for p in info.value.problems] == [".maestro/subflows/broken.yaml:3"] * 2


def test_a_file_is_judged_as_a_flow_and_as_a_sub_flow_separately(flows: Path) -> None:
    write(flows / "c.yaml", HEADER + "---\n- runFlow: steps.yaml\n")
    write(flows / "steps.yaml", "- tapOn: Login\n")  # a bare command list: a sub-flow, not a flow
    with pytest.raises(FlowError) as info:
        discover(flows)
    assert info.value.problems == [
        ".maestro/steps.yaml:1: the header is missing: start the file with 'appId: <package>' and a '---' line"]


def test_every_problem_is_reported_at_once(flows: Path) -> None:
    write(flows / "x.yaml", "---\n")
    write(flows / "y.yaml", "name: y\n---\n- back\n")
    with pytest.raises(FlowError) as info:
        discover(flows)
    assert [p.split(":")[0] for p in info.value.problems] == [".maestro/x.yaml", ".maestro/y.yaml"]


def test_project_sample_flows_pass_preflight(monkeypatch: pytest.MonkeyPatch) -> None:
    repo = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(repo)
    selection = discover(Path(".maestro"))
    assert "add-exercise-and-see-it-in-list.yml" in [f.file_name for f in selection.flows]
    assert all("production" in f.tags for f in selection.flows)
