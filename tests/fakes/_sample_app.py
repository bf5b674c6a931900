"""A small model of THIS repository's sample app (android/, com.example.exerciselog) for the fake maestro.

It follows the app's real code paths (MainActivity + ExerciseViewModel), as far as the flows can see them:

- launch: the title "Exercises" and the loading view ("Loading exercises...") while it signs in (a
  fresh install, i.e. `clearState`, signs in anonymously; otherwise the stored session) and loads the list;
- loaded: the exercises, each with a "Delete" button, or the empty state "No exercises yet" when the
  list is empty, plus the "Add exercise" button;
- failed (sign-in refused, server down): the error view (id `error_state`, "Could not load your
  exercises") with "Try again"; no empty state, no list, no "Add exercise" button;
- add/delete failing: the error view again, with the list as it was.

Maestro waits for what a flow asks for, so the model shows the settled screen (the loading view never
settles). The backend is one scenario switch, `"backend"` in $FAKE_MAESTRO_SCENARIO: `up` (the default),
`refuses-sign-in` (POST /v1/users/anonymous answers 503) or `down` (every request fails). A flow fails
with Maestro's own message, e.g. `Element not found: Text matching regex: No exercises yet`.
"""

from __future__ import annotations

import os
import re

import _maestro_flows as mf

APP_ID = "com.example.exerciselog"
BACKENDS = ("up", "refuses-sign-in", "down")


class FlowFailure(Exception):
    """A step that Maestro would fail, with Maestro's message."""


class SampleApp:
    def __init__(self, backend: str) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r} (one of {', '.join(BACKENDS)})")
        self.backend = backend
        self.server: dict[str, list[str]] = {}  # user -> exercise names (the backend's data)
        self.session: str | None = None  # the stored anonymous user (SharedPreferences)
        self.screen = "stopped"  # stopped | loaded | error
        self.items: list[str] = []
        self.dialog: str | None = None  # the add dialog's text, None when closed
        self.users = 0

    # the backend -------------------------------------------------------------------------------------
    def _call(self, sign_in: bool = False) -> None:
        if self.backend == "down" or (sign_in and self.backend == "refuses-sign-in"):
            raise OSError("HTTP 503")

    # what the app does -------------------------------------------------------------------------------
    def launch(self, clear_state: bool) -> None:
        if clear_state:
            self.session = None
        self.dialog = None
        try:
            if self.session is None:
                self._call(sign_in=True)
                self.users += 1
                self.session = f"user-{self.users}"
                self.server[self.session] = []
            self._call()
            self.items = list(self.server[self.session])
            self.screen = "loaded"
        except OSError:
            self.items, self.screen = [], "error"

    def visible(self) -> list[tuple[str, str]]:
        """(text, id) of what is on screen."""
        if self.screen == "stopped":
            return []
        shown = [("Exercises", "title")]
        if self.screen == "error":
            shown += [("Could not load your exercises", "error_state"), ("Try again", "retry")]
        else:
            shown += [(name, "exercise_row_name") for name in self.items]
            shown += [("Delete", "exercise_row_delete") for _ in self.items]
            if not self.items:
                shown.append(("No exercises yet", "empty_state"))
            shown.append(("Add exercise", "add_exercise"))
        if self.dialog is not None:
            shown += [("New exercise", "alertTitle"), (self.dialog or "Exercise name", "exercise_name"),
                      ("Save", "button1"), ("Cancel", "button2")]
        return shown

    def tap(self, text: str | None, ident: str | None) -> None:
        label = self._find(text, ident)
        if self.dialog is not None:
            if label == "Save":
                name, self.dialog = self.dialog.strip(), None
                if name:
                    self._change(lambda user: self.server[user].append(name))
            elif label == "Cancel":
                self.dialog = None
            return
        if label == "Add exercise":
            self.dialog = ""
        elif label == "Delete":
            first = self.items[0]  # Maestro taps the first match
            self._change(lambda user: self.server[user].remove(first))
        elif label == "Try again":
            self.launch(clear_state=False)

    def _change(self, apply: object) -> None:
        try:
            self._call()
            assert self.session is not None
            apply(self.session)  # type: ignore[operator]
            self.items = list(self.server[self.session])
        except OSError:
            self.screen = "error"

    def _find(self, text: str | None, ident: str | None) -> str:
        for shown, shown_id in self.visible():
            if (text is not None and re.fullmatch(text, shown)) or (ident is not None and ident == shown_id):
                return shown if ident is None or shown_id != "exercise_name" else "exercise_name"
        raise FlowFailure(not_found(text, ident))


def not_found(text: str | None, ident: str | None) -> str:
    return f"Element not found: {'Text' if text is not None else 'Id'} matching regex: {text if text is not None else ident}"


def _selector(arg: object, env: dict) -> tuple[str | None, str | None, bool]:
    if isinstance(arg, dict):
        inner = arg.get("visible", arg.get("notVisible", arg))
        if isinstance(inner, dict):
            text = inner.get("text")
            ident = inner.get("id")
            return (mf.substitute(str(text), env) if text is not None else None,
                    mf.substitute(str(ident), env) if ident is not None else None, bool(arg.get("optional")))
        return mf.substitute(str(inner), env), None, bool(arg.get("optional"))
    return mf.substitute(str(arg), env), None, False


_WHEN = re.compile(r"^\$\{\s*(\w+)\s*!=\s*'([^']*)'\s*\}$")


def _when(arg: object, env: dict) -> bool:
    condition = arg.get("when") if isinstance(arg, dict) else None
    if not isinstance(condition, dict) or "true" not in condition:
        return True
    match = _WHEN.match(str(condition["true"]).strip())
    return env.get(match.group(1)) != match.group(2) if match else True


def run(app: SampleApp, commands: list, env: dict, folder: str) -> None:
    for name, arg in commands:
        if name == "launchApp":
            app.launch(clear_state=bool(isinstance(arg, dict) and arg.get("clearState")))
        elif name in ("stopApp", "killApp"):
            app.screen, app.dialog = "stopped", None
        elif name == "tapOn":
            text, ident, optional = _selector(arg, env)
            try:
                app.tap(text, ident)
            except FlowFailure:
                if not optional:
                    raise
        elif name == "inputText":
            if app.dialog is None:
                raise FlowFailure("No focused text field to input text")
            app.dialog += mf.substitute(str(arg), env)
        elif name in ("assertVisible", "assertNotVisible", "extendedWaitUntil"):
            text, ident, _ = _selector(arg, env)
            gone = name == "assertNotVisible" or (isinstance(arg, dict) and "notVisible" in arg)
            present = any((text is not None and re.fullmatch(text, t)) or (ident is not None and ident == i)
                          for t, i in app.visible())
            if gone and present:
                raise FlowFailure(f"Assertion is false: {'Text' if text is not None else 'Id'} matching regex: "
                                  f"{text if text is not None else ident} is visible")
            if not gone and not present:
                raise FlowFailure(not_found(text, ident))
        elif name == "runFlow":
            if not _when(arg, env):
                continue
            file = arg.get("file") if isinstance(arg, dict) else arg
            sub = mf.load_flow(os.path.join(folder, str(file)))
            sub_env = dict(env)
            for key, value in ((arg.get("env") or {}) if isinstance(arg, dict) else {}).items():
                sub_env[key] = mf.substitute(str(value), env)
            run(app, sub.commands, sub_env, os.path.dirname(sub.path))
        # takeScreenshot, waitForAnimationToEnd, hideKeyboard...: nothing the model shows changes


def play(flow: mf.Flow, env: dict, backend: str) -> str | None:
    """The flow against the sample app with this backend: None when it passes, else Maestro's message."""
    if flow.header.get("appId") != APP_ID:
        return None
    try:
        run(SampleApp(backend), flow.commands, env, os.path.dirname(os.path.abspath(flow.path)))
    except FlowFailure as failure:
        return str(failure)
    return None
