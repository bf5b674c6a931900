"""prodval: production validation of a mobile app with Maestro, driven by invoke tasks."""

__version__ = "0.1.0"
