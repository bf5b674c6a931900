"""prodval: production validation of a mobile app with Maestro, driven by invoke tasks.

Layers (a module imports its own layer and those below it, never one above; tests/unit/test_layering.py checks it):

- foundation: errors, secrets, console, commands, settings, jsexpr, runlock, outcomes
- tools: host, sdk, devices, maestro, apkfile, flows, flowlint, doctor, crashes (where things are, what they say)
- lifecycle: install, emulator, results, report, schedule, alerts, apkcheck, history, recording (what a run owns)
- stages: validate, apk, notify, merge, stage, impact (one stage from its start to its record)
- entry: cli, boundary, chain, flags (the invoke tasks, their flags and the one error boundary)
"""

__version__ = "0.1.0"
