#!/usr/bin/env bash
# Installs the Debian packages the local stack needs. Called by .ci/run and scripts/setup.sh.
# Idempotent: packages already present are skipped without touching apt.
set -euo pipefail
PKGS=(docker.io docker-registry busybox-static debootstrap chromium chromium-driver
      openssl curl ca-certificates jq psmisc procps
      containerd containernetworking-plugins conntrack iptables socat   # the real node (scripts/node.sh)
      prometheus)   # metric analysis (scripts/prometheus.sh, issue 11)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-system: installing ${missing[*]}"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  # policy-rc.d stops the packages' own services from starting: we run our own instances on our own ports.
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null; $SUDO chmod +x /usr/sbin/policy-rc.d
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
echo "install-system: ok"
