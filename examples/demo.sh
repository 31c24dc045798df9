#!/usr/bin/env bash
# The seed case: two bundled profiles running at the same time, each with its own
# /usr/bin/python, while the host's /usr is left as it is.
#   examples/demo.sh [PATH-TO-ENVBOX]
set -euo pipefail
envbox=${1:-envbox}
probe='import sys, ssl, json, sqlite3; print("/usr/bin/python is Python %s" % sys.version.split()[0])'

echo "== host: /usr/bin/python"
ls -l /usr/bin/python 2>&1 | sed 's/^/   /' || true

echo "== building the layers once (Python 2.7 from Debian bullseye, Python 3 and Node 22)"
"$envbox" build chrome
"$envbox" build node

echo "== chrome and node, at the same time"
gate=$(mktemp -u)
"$envbox" run --profile chrome -- /usr/bin/python -c "$probe
import os, time
while not os.path.exists('$gate'): time.sleep(0.02)" | sed 's/^/   chrome: /' &
chrome=$!
"$envbox" run --profile node -- /usr/bin/python -c "$probe" | sed 's/^/   node:   /'
"$envbox" run --profile node -- node -e 'console.log("   node:   /usr/bin/node is Node " + process.version)'
touch "$gate"
wait "$chrome"
rm -f "$gate"

echo "== host again: /usr/bin/python"
ls -l /usr/bin/python 2>&1 | sed 's/^/   /' || true
