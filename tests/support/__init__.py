"""Shared test helpers: small networks and data (`nets`), backend facts (`backends`), and the
scripts that tests run in their own processes (`workers/`)."""

from pathlib import Path

# Scripts run as separate processes by the tests (`python WORKERS / "name.py" ...`).
WORKERS = Path(__file__).resolve().parent / "workers"
