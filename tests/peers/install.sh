#!/usr/bin/env bash
# Installs the real peers the end-to-end tests drive (Debian 12, as root):
# Prosody (with prosody-modules, for mod_privilege), ejabberd, Postfix (smtp-sink/smtp-source, private instances), swaks, go-sendxmpp, Dovecot,
# BIND's named-checkzone, GnuPG (and the build needs of sequoia-openpgp),
# a Python venv with slixmpp, aiosmtpd and pytest, and cargo-fuzz.
# Usage: tests/peers/install.sh [VENV]   (default: target/peers-venv)
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
venv=${1:-$here/target/peers-venv}
export DEBIAN_FRONTEND=noninteractive
# Postfix: smtp-sink and smtp-source, and private instances the tests start
# with their own configuration; "No configuration" keeps the system daemon off.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
apt-get update -q
apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300 \
  prosody prosody-modules lua-event lua-unbound \
  go-sendxmpp \
  swaks libnet-ssleay-perl libio-socket-ssl-perl \
  postfix \
  dovecot-imapd dovecot-lmtpd \
  dnsmasq-base openssl iproute2 ca-certificates \
  bind9-utils \
  bogofilter \
  postgresql \
  systemd \
  nettle-dev libgmp-dev pkg-config clang \
  gnupg gpg-wks-client
# nettle-dev libgmp-dev pkg-config clang: what sequoia-openpgp's nettle
# backend needs to build (bindgen needs libclang and its headers).
# gnupg gpg-wks-client: the independent check of the keys facteur serves
# by WKD (the URL of an address, and `gpg --import` of what is served).
# postgresql: initdb and pg_ctl for the private clusters of the tests and
# the bench (tests/peers/pg-cluster); the package's own cluster is not used.
# bogofilter: the reference classifier of tests/bench/spam.
# systemd: only systemd-analyze is used (the unit's sandbox score,
# offline); no systemd needs to run.
# ejabberd: the tests start their own instances, each with a config in a
# temporary folder; the package's own server must not start. A
# policy-rc.d that refuses every start keeps invoke-rc.d from starting it
# (one already in place, as in container images, is left as it is).
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  trap 'rm -f "$policy"' EXIT
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy"
  apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300 ejabberd
  rm -f "$policy"
  trap - EXIT
else
  apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300 ejabberd
fi
# cargo-fuzz, for the fuzzing run of tests/run.
if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz 0.13.2" ]; then
  cargo install cargo-fuzz --version 0.13.2 --locked
fi
python3 -m venv "$venv"
"$venv/bin/pip" install -q --no-cache-dir -r "$here/tests/peers/requirements.txt"
