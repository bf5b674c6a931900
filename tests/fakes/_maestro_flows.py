"""Flow reading, step descriptions, debug artifacts and reports for the fake `maestro`.

Pure helpers (no argv, no exit codes); the executable `maestro` next to this file drives them.
Uses PyYAML when importable, else a small fallback parser good enough for test flows.
"""

from __future__ import annotations

import glob
import json
import os
import re
import time
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

import _fakestate as fs

try:
    import yaml
except ImportError:  # pragma: no cover - the test environment has PyYAML
    yaml = None

COMPOUND = {"runFlow", "retry", "repeat"}
ASSERTIONS = ("assertVisible", "assertNotVisible", "extendedWaitUntil", "assertTrue",
              "scrollUntilVisible", "tapOn")
RED, GREEN = (220, 40, 40), (40, 170, 80)


@dataclass
class Flow:
    path: str
    header: dict = field(default_factory=dict)
    commands: list = field(default_factory=list)  # [(name, arg)]
    error: str | None = None

    @property
    def name(self) -> str:
        return str(self.header.get("name") or os.path.splitext(os.path.basename(self.path))[0])

    @property
    def tags(self) -> list[str]:
        tags = self.header.get("tags") or []
        return [tags] if isinstance(tags, str) else [str(t) for t in tags]

    def hook(self, key: str) -> list:
        return [_command(c) for c in (self.header.get(key) or [])]


def _scalar(text: str):
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    if text.startswith("[") and text.endswith("]"):
        return [_scalar(t) for t in text[1:-1].split(",") if t.strip()]
    return {"true": True, "false": False}.get(text, text)


def _fallback_load_all(text: str) -> list:
    """Minimal YAML subset: top-level mappings, `- name` / `- name: value` lists, one nesting level."""
    docs = []
    for chunk in re.split(r"^---\s*$", text, flags=re.M):
        lines = [ln for ln in chunk.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        if not lines:
            continue
        if lines[0].startswith("- "):
            doc: list | dict = []
            for ln in lines:
                if ln.startswith("- "):
                    key, sep, val = ln[2:].partition(":")
                    doc.append({key.strip(): _scalar(val) if val.strip() else {}} if sep else key.strip())
                elif doc and isinstance(doc[-1], dict) and ":" in ln:
                    k, _, v = ln.strip().lstrip("- ").partition(":")
                    inner = next(iter(doc[-1].values()))
                    if isinstance(inner, dict):
                        inner.setdefault(k.strip(), _scalar(v) if v.strip() else {})
        else:
            doc, last = {}, None
            for ln in lines:
                if not ln.startswith((" ", "-")):
                    last, _, val = ln.partition(":")
                    last = last.strip()
                    doc[last] = _scalar(val) if val.strip() else []
                elif last and ln.strip().startswith("- ") and isinstance(doc[last], list):
                    doc[last].append(_scalar(ln.strip()[2:]))
                elif last and ":" in ln and (doc[last] == [] or isinstance(doc[last], dict)):
                    doc[last] = doc[last] or {}
                    key, _, val = ln.strip().partition(":")
                    doc[last][key.strip()] = _scalar(val)
        docs.append(doc)
    return docs


def load_yaml_all(text: str) -> list:
    if yaml is not None:
        return [d for d in yaml.safe_load_all(text) if d is not None]
    return _fallback_load_all(text)


def _command(item) -> tuple[str, object]:
    if isinstance(item, dict) and item:
        name = next(iter(item))
        return str(name), item[name]
    return str(item), None


def load_flow(path: str) -> Flow:
    flow = Flow(path=path)
    try:
        with open(path, encoding="utf-8") as fh:
            docs = load_yaml_all(fh.read())
    except Exception as exc:  # any parse problem is a flow error
        flow.error = f"Failed to parse file: {path}: {exc}"
        return flow
    for doc in docs:
        if isinstance(doc, dict):
            flow.header = doc
        elif isinstance(doc, list):
            flow.commands = [_command(c) for c in doc]
    return flow


_VAR = re.compile(r"""\$\{\s*(\w+)\s*(?:\|\|\s*(['"])(.*?)\2\s*)?\}""")


def substitute(text: str, env: dict) -> str:
    """`${NAME}` and `${NAME || 'default'}`; other JS expressions are left as they are."""
    def one(m: re.Match) -> str:
        if m.group(1) in env:
            return str(env[m.group(1)])
        return m.group(3) if m.group(2) else m.group(0)
    return _VAR.sub(one, text)


def _selector(arg) -> str:
    if isinstance(arg, dict):
        if "text" in arg:
            return f'"{arg["text"]}"'
        if "id" in arg:
            return f"id: {arg['id']}"
        if "element" in arg:
            return _selector(arg["element"])
        for key in ("visible", "notVisible"):
            if key in arg:
                return _selector(arg[key])
        return ", ".join(f"{k}: {v}" for k, v in arg.items())
    return f'"{arg}"'


def describe(name: str, arg, header: dict, env: dict) -> str:
    """Maestro's `Command.description()` for the common commands."""
    app = header.get("appId", "")
    if name == "launchApp":
        app = (arg.get("appId") if isinstance(arg, dict) else arg) or app
        clear = isinstance(arg, dict) and arg.get("clearState")
        text = f'Launch app "{app}"' + (" with clear state" if clear else "")
    elif name in ("tapOn", "doubleTapOn", "longPressOn"):
        verb = {"tapOn": "Tap on", "doubleTapOn": "Double tap on", "longPressOn": "Long press on"}
        text = f"{verb[name]} {_selector(arg)}"
    elif name == "assertVisible":
        text = f"Assert that {_selector(arg)} is visible"
    elif name == "assertNotVisible":
        text = f"Assert that {_selector(arg)} is not visible"
    elif name == "extendedWaitUntil":
        gone = isinstance(arg, dict) and "notVisible" in arg
        text = f"Assert that {_selector(arg)} is {'not ' if gone else ''}visible"
    elif name == "scrollUntilVisible":
        text = f"Scrolling DOWN until {_selector(arg)} is visible."
    elif name == "inputText":
        text = f"Input text {arg}"
    elif name == "takeScreenshot":
        text = f"Take screenshot {screenshot_path(arg)}"
    elif name == "runFlow":
        src = arg.get("file", "commands") if isinstance(arg, dict) else arg
        text = f"Run flow {src}"
    elif name == "runScript":
        text = f"Run {arg.get('file') if isinstance(arg, dict) else arg}"
    elif name in ("stopApp", "clearState", "killApp"):
        verb = {"stopApp": "Stop app", "clearState": "Clear state of", "killApp": "Kill app"}[name]
        text = f"{verb} {arg or app}"
    else:
        fixed = {"back": "Press back", "hideKeyboard": "Hide Keyboard", "scroll": "Scroll vertically",
                 "waitForAnimationToEnd": "Wait for animation to end", "eraseText": "Erase text",
                 "retry": "Retry", "repeat": "Repeat"}
        text = fixed.get(name) or (name if arg is None else f"{name} {arg}")
    return substitute(text, env)


def screenshot_path(arg) -> str:
    path = arg.get("path", "screenshot") if isinstance(arg, dict) else str(arg or "screenshot")
    return path[:-4] if path.endswith(".png") else path


def pick_failed_step(commands: list, message: str) -> int:
    """Index of the step that a `fail:<message>` outcome fails at."""
    for i, (name, arg) in enumerate(commands):
        if name in ASSERTIONS and arg is not None and _selector(arg).strip('"') in message:
            return i
    for i in range(len(commands) - 1, -1, -1):
        if commands[i][0] in ASSERTIONS:
            return i
    return len(commands) - 1


def safe(text: str, limit: int = 60) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_")[:limit]


def write_flow_artifacts(layout: str, root: str, bundle_parent: str, flow: Flow, steps: list,
                         status: str, message: str | None, device: str, start: float,
                         duration: float, version: str, log_lines: list[str]) -> None:
    """Per-flow debug output: `bundle` (2.7+) or `flat` (2.6) layout, see README.md."""
    name = flow.name.replace("/", "_")
    commands = [{"command": {s["name"]: s["arg"]}, "description": s["description"],
                 "metadata": {k: v for k, v in (("status", s["status"]), ("timestamp", s["timestamp"]),
                                                ("duration", s["duration"]), ("error", s.get("error")))
                              if v is not None}} for s in steps]
    if layout == "flat":
        os.makedirs(root, exist_ok=True)
        with open(os.path.join(root, f"commands-({name}).json"), "w", encoding="utf-8") as fh:
            json.dump(commands, fh, indent=2)
        for s in steps:
            if s["name"] == "takeScreenshot" and s["status"] == "COMPLETED":
                fs.write_png(os.path.join(root, f"screenshot-✅-{s['timestamp']}-({name}).png"), GREEN)
            elif s["status"] == "FAILED":
                fs.write_png(os.path.join(root, f"screenshot-❌-{s['timestamp']}-({name}).png"), RED)
        return
    bundle = os.path.join(bundle_parent, name)
    os.makedirs(os.path.join(bundle, "logs"), exist_ok=True)
    manifest = {"flowName": flow.name, "flowFile": os.path.abspath(flow.path), "status": status,
                "device": device, "startTime": int(start * 1000), "durationMs": int(duration * 1000),
                "maestroVersion": version, "error": message}
    with open(os.path.join(bundle, "manifest.json"), "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=2)
    with open(os.path.join(bundle, "commands.json"), "w", encoding="utf-8") as fh:
        json.dump(commands, fh, indent=2)
    with open(os.path.join(bundle, "logs", "maestro.log"), "w", encoding="utf-8") as fh:
        fh.write("".join(line + "\n" for line in log_lines))
    for s in steps:
        if s["name"] == "takeScreenshot" and s["status"] == "COMPLETED":
            fs.write_png(os.path.join(bundle, "takeScreenshot", screenshot_path(s["arg"]) + ".png"), GREEN)
        elif s["status"] == "FAILED":
            stem = f"step-{s['index']:03d}-{s['name']}"
            if s["arg"] is not None:
                stem += "-" + safe(_selector(s["arg"]).strip('"'))
            fs.write_png(os.path.join(bundle, "screenshots", stem + ".png"), RED)
            os.makedirs(os.path.join(bundle, "screen-hierarchy"), exist_ok=True)
            with open(os.path.join(bundle, "screen-hierarchy", stem + ".json"), "w", encoding="utf-8") as fh:
                json.dump({"attributes": {"resource-id": "android:id/content"}, "children": []}, fh)


def expand_inputs(paths: list[str], config_path: str | None) -> tuple[list[str], dict]:
    """Flow files for the given files/folders, plus the workspace config (folder input only)."""
    flows, config = [], {}
    for path in paths:
        if not os.path.isdir(path):
            flows.append(path)
            continue
        cfg = config_path or next((os.path.join(path, n) for n in ("config.yaml", "config.yml")
                                   if os.path.isfile(os.path.join(path, n))), None)
        if cfg:
            with open(cfg, encoding="utf-8") as fh:
                config = next(iter(load_yaml_all(fh.read())), {}) or {}
        found = set()
        matchers = [_java_glob(pattern) for pattern in config.get("flows") or ["*"]]
        for hit in glob.glob(os.path.join(path, "**"), recursive=True):  # Files.walk, then glob:<dir>/<pattern>
            rel = os.path.relpath(hit, path).replace(os.sep, "/")
            base = os.path.basename(hit)
            if os.path.isfile(hit) and hit.endswith((".yaml", ".yml")) and base not in ("config.yaml", "config.yml") \
                    and (not cfg or os.path.abspath(hit) != os.path.abspath(cfg)) \
                    and any(m.fullmatch(rel) for m in matchers) and not _is_config_content(hit):
                found.add(hit)
        flows.extend(sorted(found))
    return flows, config


CONFIG_KEYS = {"flows", "includeTags", "excludeTags", "local", "executionOrder", "baselineBranch", "notifications",
               "disableRetries", "platform", "testOutputDir"}


def _java_glob(pattern: str) -> re.Pattern:
    """Java NIO glob as Maestro uses it: `*` within a folder, `**` across folders, `{a,b}` groups."""
    out, i, group = "", 0, False
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            out, i = out + ".*", i + 2
            continue
        out += {"*": "[^/]*", "?": "[^/]"}.get(c) or ("(?:" if c == "{" else ")" if c == "}" and group else
                                                     "|" if c == "," and group else re.escape(c))
        group = (group or c == "{") and c != "}"
        i += 1
    return re.compile(out)


def _is_config_content(path: str) -> bool:
    """Maestro's isWorkspaceConfigFile: no `---`, and only workspace config keys."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        if "\n---" in text:
            return False
        docs = load_yaml_all(text)
    except Exception:
        return False
    return len(docs) == 1 and isinstance(docs[0], dict) and bool(docs[0]) and set(map(str, docs[0])) <= CONFIG_KEYS


def kotlin_duration(seconds: float) -> str:
    whole = int(seconds)
    h, m, s = whole // 3600, whole % 3600 // 60, whole % 60
    parts = [f"{h}h"] * bool(h) + [f"{m}m"] * bool(m) + [f"{s}s"] * bool(s or not (h or m))
    return " ".join(parts)


def _attr(value) -> str:
    return escape(str(value), {'"': "&quot;", "\n": "&#10;"})


def junit_xml(suite_name: str, device: str, results: list[dict], suite_time: float,
              timestamp: str) -> str:
    failures = sum(r["status"] == "ERROR" for r in results)
    out = ["<?xml version='1.0' encoding='UTF-8'?>", "<testsuites>",
           f'  <testsuite name="{_attr(suite_name)}" device="{_attr(device)}" tests="{len(results)}" '
           f'failures="{failures}" time="{suite_time:.3f}" timestamp="{timestamp}">']
    for r in results:
        attrs = (f'id="{_attr(r["name"])}" name="{_attr(r["name"])}" classname="{_attr(r["name"])}" '
                 f'file="{_attr(r["file"])}" time="{r["time"]:.3f}" timestamp="{r["timestamp"]}" '
                 f'status="{r["status"]}"')
        props = ([("tags", ", ".join(r["tags"]))] if r["tags"] else []) + list(r["properties"].items())
        if not props and not r["failure"]:
            out.append(f"    <testcase {attrs}/>")
            continue
        out.append(f"    <testcase {attrs}>")
        if props:
            out.append("      <properties>")
            out += [f'        <property name="{_attr(k)}" value="{_attr(v)}"/>' for k, v in props]
            out.append("      </properties>")
        if r["failure"]:
            out.append(f"      <failure>{escape(r['failure'])}</failure>")
        out.append("    </testcase>")
    out += ["  </testsuite>", "</testsuites>", ""]
    return "\n".join(out)


def html_report(results: list[dict]) -> str:
    rows = "".join(f"<li class='{r['status'].lower()}'>{escape(r['name'])}: {r['status']}"
                   f"{' - ' + escape(r['failure']) if r['failure'] else ''}</li>" for r in results)
    return f"<html><head><title>Maestro Test Report</title></head><body><ul>{rows}</ul></body></html>\n"


def log_line(message: str, level: str = "INFO", logger: str = "MAESTRO") -> str:
    now = time.time()
    return f"{time.strftime('%H:%M:%S', time.localtime(now))}.{int(now % 1 * 1000):03d} [{level:>5}] {logger}: {message}"
