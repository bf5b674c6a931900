"""Secrets: masked value by value before anything is serialised, in every encoded form, everywhere a run
writes (files, streams, alert payloads), and announced to the Actions runner with `::add-mask::`."""

from __future__ import annotations

import base64
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from alert_servers import HttpServer
from conftest import World
from prodval.results import RecordWriter
from prodval.secrets import Redactor, encoded_forms, is_secret_name
from test_notify import ROUTING_KEY, Channels, channels, http, record  # noqa: F401 (fixtures)

# Characters that URL-encoding changes, and lengths that put the secret at every base64 alignment.
FLOW_SECRET = "p@ss w/rd+Zq9!xY"
ENV_SECRET = "envS3cr3t/with+plus"
NAMED_SECRET = "named-by-secret_env"


def every_form(secret: str) -> list[str]:
    raw = secret.encode()
    forms = {secret, quote(secret, safe=""), quote_plus(secret), raw.hex(), raw.hex().upper()}
    for prefix in (b"", b"a", b"ab"):
        for suffix in (b"", b"z", b"zz"):
            whole = base64.b64encode(prefix + raw + suffix).decode()
            # the part of the encoding that only the secret determines
            start = {0: 0, 1: 2, 2: 3}[len(prefix)]
            forms.add(whole[start:(8 * (len(prefix) + len(raw))) // 6])
    return sorted(forms)


def hostile_message(secret: str) -> str:
    raw = secret.encode()
    b64 = [base64.b64encode(p + raw).decode() for p in (b"", b"x", b"xy")]
    return (f"login refused for {secret}; header Basic {b64[0]} / {b64[1]} / {b64[2]}; "
            f"url ?p={quote_plus(secret)}&q={quote(secret, safe='')}; hex {raw.hex()} \x1b[31mred\x1b[0m \x07bell")


def test_the_encoded_forms_cover_every_alignment() -> None:
    redact = Redactor([FLOW_SECRET])
    for prefix in (b"", b"a", b"ab", b"abc"):
        for suffix in (b"", b"z", b"zz"):
            for encode in (base64.b64encode, base64.urlsafe_b64encode):
                text = encode(prefix + FLOW_SECRET.encode() + suffix).decode()
                assert "***" in redact(text), (prefix, suffix, text)
    for form in every_form(FLOW_SECRET):
        assert redact(f"<{form}>") == "<***>", form
    assert set(every_form(FLOW_SECRET)) <= set(encoded_forms(FLOW_SECRET))


@pytest.mark.parametrize("name", ["SESSION_COOKIE", "AUTH_HEADER", "BASIC_AUTH", "USER_OTP", "LOGIN_PIN",
                                  "PRIVATE_THING", "GOOGLE_CREDENTIALS", "SIGNING_KEY", "encryptionKey",
                                  "authToken", "DB_PASSPHRASE"])
def test_credential_like_names(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize("name", ["SHIPPING_MODE", "AUTHOR", "KEYBOARD", "MONKEY", "EXERCISE", "OPTION"])
def test_ordinary_names(name: str) -> None:
    assert not is_secret_name(name)


@pytest.mark.parametrize("secret", ["passed", "status", "verdict", "flows", "release"])
def test_a_secret_equal_to_a_word_of_ours_does_not_break_the_record(world: World, channels: Channels,  # noqa: F811
                                                                     secret: str) -> None:
    world.device().scenario({"login.yaml": ["fail:Element not found: release button"]})
    world.flow("login.yaml")
    world.flow("add-exercise.yaml")
    run = world.invoke("validate", "--retries", "0", "--env", f"LOGIN_PASSWORD={secret}")
    assert run.returncode == 1, run.stderr
    data = world.record()
    assert data["verdict"] == "fail"
    assert {f["status"] for f in data["flows"]} == {"failed", "passed"}
    assert data["flows"][0]["flowFileName"] in ("login.yaml", "add-exercise.yaml")
    report = world.invoke("report")
    assert report.returncode == 0, report.stderr
    notify = world.invoke("notify", LOGIN_PASSWORD=secret)
    assert notify.returncode == 0, notify.stderr
    assert "no run record" not in notify.stderr
    assert {a["delivered"] for a in world.record()["alerts"]} == {True}


def test_a_secret_inside_a_path_leaves_the_path_alone(tmp_path: Path) -> None:
    run = record(tmp_path)
    run.environment.apkBuildPath = "android/app/build/outputs/apk/release/app-release.apk"
    run.flows[0].errorSummary = "signing with alias release failed"
    RecordWriter(tmp_path, Redactor(["release"])).finish(run)
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["environment"]["apkBuildPath"].endswith("/release/app-release.apk")
    assert data["flows"][0]["errorSummary"] == "signing with alias *** failed"


def test_every_file_and_stream_of_a_run_is_free_of_every_form_of_every_secret(
        world: World, channels: Channels) -> None:  # noqa: F811
    summary, output = world.root / "step-summary.md", world.root / "github-output.txt"
    actions = {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_OUTPUT": str(output),
               "GITHUB_RUN_ID": "987654", "GITHUB_SERVER_URL": "https://github.com",
               "APP_LOGIN_BLOB": ENV_SECRET, "LOGIN_THING": NAMED_SECRET,
               "INVOKE_VALIDATION_SECRET_ENV": "LOGIN_THING,APP_LOGIN_BLOB"}
    secrets = [FLOW_SECRET, ENV_SECRET, NAMED_SECRET, *channels.secrets]
    message = " | ".join(hostile_message(s) for s in (FLOW_SECRET, ENV_SECRET, NAMED_SECRET))
    world.device(logcat=[f"05-01 I App: {hostile_message(FLOW_SECRET)}", f"05-01 I App: {hostile_message(NAMED_SECRET)}"])
    world.scenario({"login.yaml": [f"fail:{message}"]})
    world.flow("login.yaml")
    world.flow("add-exercise.yaml")
    streams = []
    for args in (("validate", "--retries", "0", "--env", f"SESSION_COOKIE={FLOW_SECRET}",
                  "--env", f"LOGIN_THING={NAMED_SECRET}"),
                 ("report",), ("notify",)):
        run = world.invoke(*args, **actions)
        assert run.returncode in (0, 1), run.stdout[-3000:] + run.stderr
        streams += [run.stdout, run.stderr]
        if args[0] == "validate":
            added = {line.removeprefix("::add-mask::") for line in run.stdout.splitlines()
                     if line.startswith("::add-mask::")}
            for secret in (FLOW_SECRET, ENV_SECRET, NAMED_SECRET):
                assert set(every_form(secret)) <= added, secret  # the runner masks them too
    record_text = (world.results / "results.json").read_text()
    assert "login refused for ***" in record_text  # the message is there, masked
    junit = (world.results / "junit.xml").read_text()
    ET.fromstring(junit.encode())  # well-formed, whatever the tool printed (ANSI, BEL)
    files = [p for p in world.root.rglob("*") if p.is_file() and p.suffix not in (".png", ".apk")
             and "fake-" not in p.name and "bin" not in p.parts]
    texts = {str(p): p.read_bytes().decode(errors="replace") for p in files}
    texts |= {f"stream {i}": s for i, s in enumerate(streams)}
    # the payloads (the GitHub token travels in a header and PagerDuty's routing key in `routing_key`, as
    # those APIs require; nowhere else)
    for i, r in enumerate(channels.http.requests):
        body = r.json()
        assert isinstance(body, dict)
        body.pop("routing_key", None)
        texts[f"http {i} {r.path}"] = json.dumps(body, ensure_ascii=False) + r.body.decode().replace(ROUTING_KEY, "")
    texts |= {f"mail {i}": m.as_string() for i, (_, m) in enumerate(channels.smtp.messages)}
    leaks = []
    for where, raw in texts.items():
        text = "\n".join(line for line in raw.splitlines() if not line.startswith("::add-mask::"))
        for secret in secrets:
            for form in every_form(secret):
                if len(form) >= 6 and form in text:
                    leaks.append((where, secret, form))
    assert leaks == []
    assert len(channels.slack_posts()) == 1 and channels.smtp.messages  # the alerts did go out


def test_the_job_summary_escapes_what_a_server_answered(world: World, http: HttpServer) -> None:  # noqa: F811
    from alert_servers import Reply

    record(world.results)
    http.script("/hook", Reply(400, "<script>alert(1)</script> invalid_payload"))
    summary = world.root / "summary.md"
    run = world.invoke("notify", SLACK_WEBHOOK_URL=http.url("/hook"), GITHUB_ACTIONS="true",
                       GITHUB_STEP_SUMMARY=str(summary))
    assert run.returncode == 0, run.stderr
    text = summary.read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt; invalid_payload" in text and "<script>" not in text


def test_a_switch_under_a_credential_like_name_is_not_a_secret() -> None:
    redact = Redactor.from_env({"AUTH_ENABLED": "true", "USE_SESSION": "false", "SESSION_COOKIE": "c00kie-v4lue"})
    assert redact("flows passed: true, retry: false, cookie c00kie-v4lue") == "flows passed: true, retry: false, cookie ***"


def test_what_the_system_sets_under_credential_like_names_is_not_a_secret() -> None:
    """A desktop session, ssh-agent or a CPython image set these; masking `user` would hide that word everywhere.
    The same names as flow variables, or named in validation.secret_env, are the user's and masked."""
    system = {"XDG_SESSION_CLASS": "user", "XDG_SESSION_ID": "c2a7", "SSH_AUTH_SOCK": "/tmp/ssh-x/agent.1",
              "DBUS_SESSION_BUS_ADDRESS": "unix:path=/run/user/0/bus", "GPG_KEY": "A035C8C19219BA821ECEA86B64E628F8D684696D",
              "SESSION_TOKEN": "s3cr3t-value"}
    assert Redactor.from_env(system).values == ("s3cr3t-value",)
    assert "user" in Redactor.from_env(system, names=("XDG_SESSION_CLASS",)).values
    assert "c2a7-flow" in Redactor.from_env({}, {"XDG_SESSION_ID": "c2a7-flow"}).values
