#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder's image (the zip is unpacked in
# /autograder/source). It installs the eca-ref wheel bundled in the zip, the exact code that wrote it,
# into a virtual environment of its own, with the versions of NumPy, SciPy, click and rich that the
# teacher had (constraints.txt) where this Python can install them.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if ! command -v python3 >/dev/null || ! python3 -c "import ensurepip, venv" 2>/dev/null; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3 python3-venv python3-pip
fi
python3 -m venv "$here/venv"
py="$here/venv/bin/python"
"$py" -m pip install -q --upgrade pip
wheel="$(ls "$here"/eca_ref-*.whl | head -n 1)"
if ! "$py" -m pip install -q -c "$here/constraints.txt" "$wheel"; then
    echo "setup.sh: the versions in constraints.txt do not install on this Python; installing the newest instead"
    "$py" -m pip install -q "$wheel"
fi
# The bundled config must be readable and match the installed eca-ref: fail the build now, not at grading.
"$py" -m eca_ref.grading.autograder --check "$here"
