#!/usr/bin/env bash
# Installs the federation interop peers from Debian (prosody, ejabberd) without ever
# starting their system services: the tests start each with its own config and data
# directory on loopback ports (tests/s2s_interop.rs). Idempotent; needs root (CI is).
set -euo pipefail

missing=()
command -v prosody >/dev/null 2>&1 || missing+=(prosody)
[ -x /usr/sbin/ejabberdctl ] || missing+=(ejabberd)
# Prosody resolves through libunbound when lua-unbound is present, which can be
# pointed at the tests' loopback DNS server (plain net.dns only reads resolv.conf).
[ -e /usr/lib/x86_64-linux-gnu/lua/5.4/lunbound.so ] || missing+=(lua-unbound)
if [ ${#missing[@]} -eq 0 ]; then
  # (`prosody --version` waits on a terminal; ask dpkg instead.)
  echo "interop peers present: prosody $(dpkg-query -W -f='${Version}' prosody), ejabberd $(dpkg-query -W -f='${Version}' ejabberd)"
  exit 0
fi

# A policy-rc.d that refuses every start keeps the packages' postinst scripts from
# launching the system daemons (invoke-rc.d honours it).
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy"
  chmod 755 "$policy"
  created_policy=1
fi
cleanup() { if [ "$created_policy" = 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Whatever a postinst managed to start regardless is not ours to keep.
for service in prosody ejabberd; do
  if command -v service >/dev/null 2>&1; then service "$service" stop >/dev/null 2>&1 || true; fi
done
echo "installed: ${missing[*]}"
