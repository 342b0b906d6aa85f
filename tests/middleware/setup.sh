#!/usr/bin/env bash
# Installs the pinned middlewares, frameworks and servers that the targets in this folder
# wrap, into this folder only (nothing global):
#   node/node_modules  from node/package-lock.json (npm ci)
#   py/site            from py/requirements.txt    (pip install --target)
# Idempotent: a second run with everything in place checks and prints, installs nothing.
# Needs node >= 18 with npm, and python3 >= 3.10 with pip (as root on Debian it installs
# python3-pip with apt-get when pip is missing). Reaches only the npm registry and PyPI.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

command -v node >/dev/null || { echo "setup.sh: node is missing (apt-get install nodejs npm)" >&2; exit 1; }
command -v npm >/dev/null || { echo "setup.sh: npm is missing (apt-get install npm)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "setup.sh: python3 is missing" >&2; exit 1; }

# --- Node -----------------------------------------------------------------------------
lock_sum="$(sha256sum node/package-lock.json | cut -d' ' -f1)"
if [[ -f node/node_modules/.lock-sum && "$(cat node/node_modules/.lock-sum)" == "$lock_sum" ]]; then
  echo "node: node/node_modules is up to date with package-lock.json"
else
  echo "node: npm ci in node/"
  (cd node && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
  echo "$lock_sum" > node/node_modules/.lock-sum
fi

# --- Python ---------------------------------------------------------------------------
if ! python3 -m pip --version >/dev/null 2>&1; then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
    echo "py: pip is missing; apt-get install python3-pip"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip >/dev/null
  else
    echo "setup.sh: python3 -m pip is missing" >&2; exit 1
  fi
fi
req_sum="$( (sha256sum py/requirements.txt; python3 -c 'import sys; print(sys.version)') | sha256sum | cut -d' ' -f1)"
if [[ -f py/site/.req-sum && "$(cat py/site/.req-sum)" == "$req_sum" ]]; then
  echo "py: py/site is up to date with requirements.txt"
else
  echo "py: pip install --target py/site -r py/requirements.txt"
  rm -rf py/site
  pip_args=(install --quiet --disable-pip-version-check --no-warn-script-location
            --target py/site --only-binary=:all: -r py/requirements.txt)
  # pip's resolver looks at the packages of the system Python too and may warn about
  # conflicts among them; those warnings are about the system, not about py/site.
  if ! python3 -m pip "${pip_args[@]}" 2> >(grep -v -e "dependency resolver" -e "which is incompatible" -e "Running pip as the 'root'" >&2); then
    # A Debian python3 marked EXTERNALLY-MANAGED: --target installs nothing into it.
    python3 -m pip "${pip_args[@]}" --break-system-packages
  fi
  echo "$req_sum" > py/site/.req-sum
fi

# --- What is installed ----------------------------------------------------------------
echo
echo "installed (node/node_modules):"
(cd node && node -e '
  for (const p of ["express-idempotency", "@node-idempotency/nestjs", "@node-idempotency/core",
                   "@node-idempotency/storage-adapter-memory", "express", "@nestjs/core",
                   "@nestjs/common", "@nestjs/platform-express", "reflect-metadata", "rxjs"]) {
    // @node-idempotency/core: the copy the nestjs plugin loads (nested when present).
    const fs = require("fs");
    const nested = "./node_modules/@node-idempotency/nestjs/node_modules/" + p + "/package.json";
    const file = fs.existsSync(nested) ? nested : "./node_modules/" + p + "/package.json";
    try { console.log("  " + p + "@" + JSON.parse(fs.readFileSync(file)).version); } catch { console.log("  " + p + ": MISSING"); process.exitCode = 1; }
  }')
echo "installed (py/site):"
python3 - <<'EOF'
import os, sys
site = os.path.join("py", "site")
sys.path.insert(0, site)
from importlib import metadata
want = ["asgi-idempotency-header", "django-idempotency-key", "fastapi", "starlette", "uvicorn", "django", "waitress"]
bad = 0
for name in want:
    try:
        print(f"  {name}=={metadata.version(name)}")
    except metadata.PackageNotFoundError:
        print(f"  {name}: MISSING"); bad = 1
sys.exit(bad)
EOF
echo "setup.sh: done"
