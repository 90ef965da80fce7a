# Sourced by the run-* scripts: makes ./.venv with the project installed (editable).
# Needs only Python >= 3.11; installs Debian's python3-venv when venv is missing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || {
    echo "dcc-gateway needs Python 3.11 or newer (found: $("$PYTHON" --version 2>&1))" >&2; exit 1; }

apt_install() {
    # apt_install PKG...: installs Debian packages, as root or through sudo.
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "$@" >/dev/null \
        || { $sudo apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "$@" >/dev/null; }
}

if [ ! -x .venv/bin/python ]; then
    if ! "$PYTHON" -m venv .venv 2>/dev/null; then
        rm -rf .venv
        apt_install python3-venv
        "$PYTHON" -m venv .venv
    fi
fi
VENV_PY="$ROOT/.venv/bin/python"
install_project() {
    # install_project EXTRAS: pip-installs the project once per pyproject.toml change.
    local extras="$1" stamp=".venv/.installed-$1"
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        "$VENV_PY" -m pip install -q --upgrade pip >/dev/null
        "$VENV_PY" -m pip install -q -e ".[$extras]"
        touch "$stamp"
    fi
}
