# Sourced by the other scripts: makes `uv` available and the project's environment current.
# Needs only Python 3.11+ with pip; uv is installed into .tools/ when it is not on PATH.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if command -v uv >/dev/null 2>&1; then
  UV="$(command -v uv)"
elif [ -x "$ROOT/.tools/bin/uv" ]; then
  UV="$ROOT/.tools/bin/uv"
else
  PYTHON="${PYTHON:-python3}"
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "mcp_sentinel needs Python 3.11 or newer ($PYTHON is $("$PYTHON" --version 2>&1))" >&2; exit 1; }
  echo "installing uv into .tools/ ..." >&2
  "$PYTHON" -m venv "$ROOT/.tools"
  "$ROOT/.tools/bin/python" -m pip install --quiet --disable-pip-version-check uv
  UV="$ROOT/.tools/bin/uv"
fi
export UV
# Bytecode compiled at install, the project's own modules included: Python otherwise compiles
# every module it imports at every start wherever it may not write its cache (read-only
# installs, PYTHONDONTWRITEBYTECODE set, as in many CI images and containers), and `sentinel
# run` took about twice as long to answer /readyz (benchmarks/startup.py measures both). Once
# compiled, the check costs a fraction of a second.
"$UV" sync --frozen --quiet --compile-bytecode
# A module that does not compile is named here and fails where it is imported, not here.
"$UV" run --frozen --no-sync python -m compileall -q mcp_sentinel || true
