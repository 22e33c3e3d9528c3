#!/usr/bin/env bash
# Installs what tests/converse_web.rs and tests/xmppjs_interop.rs need: Debian's
# Chromium (driven headless by playwright-core, never Playwright's own browser
# download) and the pinned npm packages of tests/web (converse.js, playwright-core,
# @xmpp/client) from package-lock.json.
# Idempotent; the apt step needs root (CI is).
set -euo pipefail
cd "$(dirname "$0")/../web"

if [ ! -x /usr/bin/chromium ] || ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  missing=()
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  command -v node >/dev/null 2>&1 || missing+=(nodejs)
  command -v npm >/dev/null 2>&1 || missing+=(npm)
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# npm ci wipes node_modules; skip it when every locked package is installed at its
# locked version.
if ! node -e '
  const fs = require("fs");
  const lock = JSON.parse(fs.readFileSync("package-lock.json", "utf8")).packages;
  for (const [path, entry] of Object.entries(lock)) {
    if (!path || !entry.version) continue;
    const pkg = JSON.parse(fs.readFileSync(path + "/package.json", "utf8"));
    if (pkg.version !== entry.version) process.exit(1);
  }' 2>/dev/null; then
  npm ci --no-audit --no-fund --ignore-scripts
fi
echo "browser test ready: $(/usr/bin/chromium --version 2>/dev/null || echo chromium), node $(node --version), converse.js $(node -p "require('./node_modules/converse.js/package.json').version"), xmpp.js $(node -p "require('./node_modules/@xmpp/client/package.json').version")"
