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

ensure_postgres() {
    # ensure_postgres: makes sure the PostgreSQL the store tests use (postgres@127.0.0.1:5432, database
    # "test") is accepting connections. On a machine without PostgreSQL it installs Debian's package,
    # lets the loopback addresses in without a password (trust, as on the development machines;
    # only in a cluster installed here) and creates the database; an installed but stopped cluster
    # is started. Another server named by DCC_TEST_POSTGRES_URL is left to the tests, which say so
    # when it cannot be reached.
    if [ -n "${DCC_TEST_POSTGRES_URL:-}" ]; then
        return 0
    fi
    local installed_here=""
    if ! command -v pg_ctlcluster >/dev/null || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
        if ! pg_is_up; then
            echo "installing PostgreSQL (Debian's package) for the store tests" >&2
            apt_install postgresql || {
                echo "postgresql unavailable: its store tests fail under CI and skip otherwise" >&2; return 0; }
            installed_here=1
        fi
    fi
    local version
    version="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1 || true)"
    if [ -n "$installed_here" ] && [ -n "$version" ]; then
        local hba="/etc/postgresql/$version/main/pg_hba.conf"
        as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    fi
    if ! pg_is_up; then
        if [ -z "$version" ] || ! command -v pg_ctlcluster >/dev/null; then
            echo "PostgreSQL is not running on 127.0.0.1:5432 and there is no local cluster to start" \
                 "(no pg_ctlcluster or /etc/postgresql): its store tests fail under CI and skip otherwise" >&2
            return 0
        fi
        echo "starting PostgreSQL $version (cluster main) for the store tests" >&2
        as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start \
            || echo "could not start PostgreSQL $version main" >&2
        local tries=0
        until pg_is_up; do
            tries=$((tries + 1))
            if [ "$tries" -ge 30 ]; then
                echo "PostgreSQL did not accept connections on 127.0.0.1:5432 within 15 s" >&2
                return 0
            fi
            sleep 0.5
        done
    elif [ -n "$installed_here" ]; then
        as_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload || true
    fi
    if [ -n "$version" ] && command -v psql >/dev/null \
        && ! as_postgres psql -w -tAc "SELECT 1 FROM pg_database WHERE datname = 'test'" 2>/dev/null | grep -q 1; then
        echo "creating the database test for the store tests" >&2
        as_postgres createdb -w test || echo "could not create the database test" >&2
    fi
}

pg_is_up() {
    command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

as_postgres() {
    # The cluster's superuser, whose local logins Debian lets in (peer).
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi
}

ensure_boxed_client_runtime() {
    # ensure_boxed_client_runtime: Java and node for tests/test_boxed_client.py, which runs DCC Boxed's
    # signing tool (a jar) and DUIS parser (node) from npm. A JDK, not only a JRE: the tool's Sign and
    # Validate take one document per JVM, so the tests drive it in batches through a small Java
    # source file, which the JDK's source launcher compiles. Those tests skip locally, and fail
    # under CI, when these are missing.
    command -v javac >/dev/null || apt_install default-jdk-headless \
        || echo "default-jdk-headless unavailable: the DCC Boxed client tests will skip (fail under CI)" >&2
    if ! command -v node >/dev/null; then
        apt_install nodejs npm || echo "nodejs unavailable: the DCC Boxed client tests will skip (fail under CI)" >&2
    elif ! command -v npm >/dev/null; then
        apt_install npm || echo "npm unavailable: the DCC Boxed client tests will skip (fail under CI)" >&2
    fi
}
