#!/usr/bin/env python3
"""Installs what the Rust tests need (moto server, pinned in tests/requirements.txt) into .venv.

The test suite runs this itself on first use, so `cargo test` works on a machine that has only
the Rust toolchain and python3. It needs no pip on the machine: when the interpreter cannot
create a virtualenv with pip, it creates one without and installs pip from PyPI's own wheel.
Safe to run again: it does nothing when moto_server is already installed.
"""

import json
import os
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, ".venv")
BIN = os.path.join(VENV, "bin")
REQUIREMENTS = os.path.join(ROOT, "tests", "requirements.txt")


def run(*args):
    subprocess.run(list(args), check=True)


def has_pip(python):
    return subprocess.run([python, "-m", "pip", "--version"], capture_output=True).returncode == 0


def bootstrap_pip(python):
    """Installs pip into the venv by running pip's own wheel from PyPI (a wheel is a zip that
    Python can execute), the way get-pip does."""
    index = "https://pypi.org/pypi/pip/json"
    with urllib.request.urlopen(index, timeout=60) as r:
        release = json.load(r)
    wheel = next(f for f in release["urls"] if f["filename"].endswith(".whl"))
    # PyPI gives absolute URLs; a mirror standing in for it may give them relative to the index.
    url = urllib.parse.urljoin(index, wheel["url"])
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, wheel["filename"])
        with urllib.request.urlopen(url, timeout=120) as r, open(path, "wb") as out:
            out.write(r.read())
        run(python, os.path.join(path, "pip"), "install", "--quiet", "--no-cache-dir", path)


def main():
    if os.path.exists(os.path.join(BIN, "moto_server")):
        return 0
    python = os.path.join(BIN, "python")
    if not os.path.exists(python):
        try:
            run(sys.executable, "-m", "venv", VENV)
        except subprocess.CalledProcessError:
            # Debian's python3 without python3-venv has venv but not ensurepip.
            run(sys.executable, "-m", "venv", "--without-pip", "--clear", VENV)
    if not has_pip(python):
        bootstrap_pip(python)
    run(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", REQUIREMENTS)
    if not os.path.exists(os.path.join(BIN, "moto_server")):
        print("moto_server was not installed into .venv/bin", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
