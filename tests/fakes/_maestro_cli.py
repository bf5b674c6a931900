"""Maestro's command line as picocli sees it, for the fake `maestro`: option tables, usage texts,
a picocli-like parser (same error messages, exit code 2 for usage errors) and the Java exceptions
the fake prints for infrastructure outcomes.
"""

from __future__ import annotations

GLOBAL_SPEC = [  # (names, dest, kind, picocli parameter label)
    (("-v", "--version"), "version", "flag", ""), (("-h", "--help"), "help", "flag", ""),
    (("-p", "--platform"), "platform", "str", "<platform>"), (("--host",), "host", "str", "<host>"),
    (("--port",), "port", "int", "<port>"), (("--device", "--udid"), "device", "str", "<deviceId>"),
    (("--verbose",), "verbose", "flag", ""), (("--no-ansi", "--no-color"), "no_ansi", "flag", ""),
]
TEST_SPEC = [
    (("--config",), "config", "str", "<configFile>"), (("-s", "--shards"), "shards", "int", "<legacyShardCount>"),
    (("--shard-split",), "shard_split", "int", "<shardSplit>"), (("--shard-all",), "shard_all", "int", "<shardAll>"),
    (("-c", "--continuous"), "continuous", "flag", ""), (("-e", "--env"), "env", "map", "<String=String>"),
    (("--format",), "format", "format", "<format>"), (("--output",), "output", "str", "<output>"),
    (("--test-suite-name",), "test_suite_name", "str", "<testSuiteName>"),
    (("--debug-output",), "debug_output", "str", "<debugOutput>"),
    (("--test-output-dir",), "test_output_dir", "str", "<testOutputDir>"),
    (("--flatten-debug-output",), "flatten", "flag", ""),
    (("--include-tags",), "include_tags", "list", "<includeTags>"),
    (("--exclude-tags",), "exclude_tags", "list", "<excludeTags>"),
    (("--headless",), "headless", "flag", ""), (("--screen-size",), "screen_size", "str", "<screenSize>"),
    (("--analyze",), "analyze", "flag", ""), (("--capture-all-step-artifacts",), "capture_all", "flag", ""),
    (("--capture-step-screenshots", "--no-capture-step-screenshots"), "capture_shots", "neg", ""),
    (("--capture-step-hierarchy", "--no-capture-step-hierarchy"), "capture_hierarchy", "neg", ""),
    (("--reinstall-driver", "--no-reinstall-driver"), "reinstall_driver", "neg", ""),
    (("--api-url",), "api_url", "str", "<apiUrl>"), (("--api-key",), "api_key", "str", "<apiKey>"),
    (("--apple-team-id",), "apple_team_id", "str", "<appleTeamId>"),
    (("-p", "--platform"), "platform", "str", "<platform>"), (("--device", "--udid"), "device", "str", "<deviceId>"),
    (("--driver-host-port",), "driver_host_port", "int", "<driverHostPort>"),
    (("--no-ansi", "--no-color"), "no_ansi", "flag", ""), (("-h", "--help"), "help", "flag", ""),
]
OTHER_SUBCOMMANDS = {"cloud", "record", "upload", "hierarchy", "query", "download-samples", "login",
                     "logout", "bugreport", "studio", "start-device", "generate-completion",
                     "check-syntax", "driver", "mcp", "chat"}
GLOBAL_USAGE = ("Usage: maestro [-hv] [--[no-]ansi] [--verbose] [--device=<deviceId>] [-p=<platform>] [COMMAND]\n"
                "Commands:\n  test  Test a Flow or set of Flows on a local iOS Simulator or Android Emulator")
TEST_USAGE = ("Usage: maestro test [-ch] [--analyze] [--flatten-debug-output] [--headless] [--[no-]ansi]\n"
              "                    [--config=<configFile>] [--debug-output=<debugOutput>] [--device=<deviceId>]\n"
              "                    [--format=<format>] [--output=<output>] [-p=<platform>] [--shard-all=<shardAll>]\n"
              "                    [--shard-split=<shardSplit>] [--test-output-dir=<testOutputDir>]\n"
              "                    [--test-suite-name=<testSuiteName>] [--exclude-tags=<excludeTags>[,<excludeTags>...]]...\n"
              "                    [--include-tags=<includeTags>[,<includeTags>...]]... [-e=<String=String>]...\n"
              "                    <flowFiles>...\n"
              "Test a Flow or set of Flows on a local iOS Simulator or Android Emulator")
FORMATS = {"junit": "junit", "html": "html", "html-detailed": "html-detailed",
           "html_detailed": "html-detailed", "noop": "noop"}
TRACES = {  # outcome -> (exception class, message, frames); {serial}/{app} filled in
    "driver": ("maestro.drivers.MaestroDriverStartupException$AndroidDriverTimeoutException",
               "Maestro Android driver did not start up in time  —  emulator [ {serial} ] & port [ dadb.open( tcp:7001 ) ]",
               ["maestro.drivers.AndroidDriver.awaitLaunch(AndroidDriver.kt:171)",
                "maestro.drivers.AndroidDriver.open(AndroidDriver.kt:118)",
                "maestro.Maestro$Companion.android(Maestro.kt:641)",
                "maestro.cli.session.MaestroSessionManager.createAndroid(MaestroSessionManager.kt:415)",
                "maestro.cli.session.MaestroSessionManager.newSession(MaestroSessionManager.kt:101)",
                "maestro.cli.command.TestCommand.runShardSuite(TestCommand.kt:352)"]),
    "offline": ("java.io.IOException", "Command failed (host:transport:{serial}): device offline",
                ["dadb.adbserver.AdbServer.send$dadb(AdbServer.kt:112)",
                 "dadb.adbserver.AdbServerDadb.open(AdbServer.kt:183)",
                 "maestro.cli.session.MaestroSessionManager.createAndroid(MaestroSessionManager.kt:409)",
                 "maestro.cli.command.TestCommand.runShardSuite(TestCommand.kt:352)"]),
    "grpc": ("io.grpc.StatusRuntimeException", "UNAVAILABLE: io exception",
             ["io.grpc.stub.ClientCalls.toStatusRuntimeException(ClientCalls.java:268)",
              "io.grpc.stub.ClientCalls.getUnchecked(ClientCalls.java:249)",
              "maestro_android.MaestroDriverGrpc$MaestroDriverBlockingStub.viewHierarchy(MaestroDriverGrpc.java:1187)",
              "maestro.drivers.AndroidDriver.contentDescriptor(AndroidDriver.kt:402)",
              "maestro.orchestra.Orchestra.runFlow(Orchestra.kt:205)",
              "maestro.cli.runner.TestSuiteInteractor.runFlow(TestSuiteInteractor.kt:251)",
              "Caused by: io.netty.channel.AbstractChannel$AnnotatedConnectException: "
              "Connection refused: localhost/127.0.0.1:7001"]),
    "launch": ("maestro.MaestroException$UnableToLaunchApp", "Unable to launch app {app}",
               ["maestro.Maestro.launchApp(Maestro.kt:94)",
                "maestro.orchestra.Orchestra.launchAppCommand(Orchestra.kt:812)",
                "maestro.orchestra.Orchestra.executeCommand(Orchestra.kt:268)",
                "maestro.orchestra.Orchestra.runFlow(Orchestra.kt:205)"]),
    "report": ("java.io.FileNotFoundException", "{path} (No such file or directory)",
               ["java.base/java.io.FileOutputStream.open0(Native Method)",
                "okio.Okio__JvmOkioKt.sink(JvmOkio.kt:182)",
                "maestro.cli.command.TestCommand.saveReport(TestCommand.kt:531)"]),
    "crash": ("java.lang.IllegalStateException", "Session is already closed",
              ["maestro.cli.session.MaestroSessionManager.newSession(MaestroSessionManager.kt:131)",
               "maestro.cli.command.TestCommand.handleSessions(TestCommand.kt:298)",
               "maestro.cli.command.TestCommand.call(TestCommand.kt:243)",
               "picocli.CommandLine.executeUserObject(CommandLine.java:2045)",
               "maestro.cli.AppKt.main(App.kt:141)"]),
}


class UsageError(Exception):
    def __init__(self, message: str, usage: str):
        super().__init__(message)
        self.usage = usage


class JavaError(Exception):
    def __init__(self, kind: str, **fill: str):
        cls, msg, frames = TRACES[kind]
        self.message = msg.format(**fill)
        lines = [f"{cls}: {self.message}"] + [f if f.startswith("Caused") else f"\tat {f}" for f in frames]
        super().__init__(self.message)
        self.trace = "\n".join(lines)


def parse(tokens: list[str], spec: list, usage: str, offset: int, subcommand: bool):
    """picocli-like parse. Returns (options, positionals); with `subcommand`, stops at the first positional."""
    names = {n: entry for entry in spec for n in entry[0]}
    opts: dict = {}
    positional: list[str] = []
    i, only_positional = 0, False
    while i < len(tokens):
        tok = tokens[i]
        i += 1
        if only_positional or not tok.startswith("-") or tok == "-":
            if subcommand:
                return opts, [(offset + i - 1, tok)] + [(offset + j, t) for j, t in enumerate(tokens[i:], i)]
            positional.append(tok)
            continue
        if tok == "--":
            only_positional = True
            continue
        name, value = tok, None
        if tok.startswith("--") and "=" in tok:
            name, value = tok.split("=", 1)
        elif not tok.startswith("--") and len(tok) > 2 and tok[:2] in names:
            name, value = tok[:2], tok[2:].removeprefix("=")
        if name not in names:
            raise UsageError(f"Unknown option: '{tok}'", usage)
        opt_names, dest, kind, label = names[name]
        longest = max(opt_names, key=len)
        if kind in ("flag", "neg"):
            if value is not None and not tok.startswith("--"):
                tokens.insert(i, "-" + value)  # clustered short flags: -ch
            elif value is not None:
                raise UsageError(f"option '{longest}' should be specified without '{value}' parameter", usage)
            opts[dest] = not name.startswith("--no-") or kind == "flag"
            continue
        if value is None:
            if i >= len(tokens):
                raise UsageError(f"Missing required parameter for option '{longest}' ({label})", usage)
            value = tokens[i]
            i += 1
            if value in names:
                raise UsageError(f"Expected parameter for option '{longest}' but found '{value}'", usage)
        if kind == "map":
            if "=" not in value:
                raise UsageError(f"Value for option '{longest}' ({label}) should be in KEY=VALUE format "
                                 f"but was {value}", usage)
            key, val = value.split("=", 1)
            opts.setdefault(dest, {})[key] = val
        elif kind == "list":
            opts.setdefault(dest, []).extend(v for v in value.split(",") if v)
        else:
            if dest in opts:
                raise UsageError(f"option '{longest}' ({label}) should be specified only once", usage)
            if kind == "int":
                try:
                    value = int(value)
                except ValueError:
                    raise UsageError(f"Invalid value for option '{longest}': '{value}' is not an int", usage) from None
            if kind == "format":
                if value.lower() not in FORMATS:
                    raise UsageError(f"Invalid value for option '{longest}': cannot convert '{value}' to ReportFormat "
                                     f"(java.lang.IllegalArgumentException: Invalid format: {value}. Valid options "
                                     "are: JUNIT, HTML, HTML-DETAILED, NOOP)", usage)
                value = FORMATS[value.lower()]
            opts[dest] = value
    return opts, positional
