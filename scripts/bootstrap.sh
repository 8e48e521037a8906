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
"$UV" sync --frozen --quiet
# Bytecode compiled ahead, the environment's packages and the project's own modules: Python
# otherwise compiles every module it imports at every start wherever it may not write its
# cache (read-only installs, PYTHONDONTWRITEBYTECODE set, as in many CI images and containers),
# and `sentinel run` took about twice as long to answer /readyz (benchmarks/startup.py measures
# both). compileall compiles only what changed: ~12 s on a fresh environment, ~0.4 s once it is
# compiled, where `uv sync --compile-bytecode` compiled everything again at every command
# (1.1 s). A module that does not compile is named here and fails where it is imported.
"$UV" run --frozen --no-sync python - <<'PY' || true
import compileall
import sysconfig

for tree in (sysconfig.get_paths()["purelib"], "mcp_sentinel"):
    compileall.compile_dir(tree, quiet=1)
PY
