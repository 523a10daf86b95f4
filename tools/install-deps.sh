#!/bin/sh
# Installs every package cachefs needs to build, test and benchmark on
# Debian 12. Idempotent; run as root (or through sudo).
set -eu
[ "$(id -u)" = 0 ] || exec sudo "$0" "$@"
export DEBIAN_FRONTEND=noninteractive
pkgs="build-essential autoconf automake libtool pkg-config
      liburing-dev libfuse3-dev fuse3 libjemalloc-dev libnuma-dev
      libxxhash-dev libcmocka-dev libcurl4-openssl-dev libssl-dev
      fio python3 procps util-linux mount e2fsprogs kmod bc"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
		missing="$missing $p"
done
if [ -n "$missing" ]; then
	apt-get update -q
	# shellcheck disable=SC2086
	apt-get install -y -q --no-install-recommends $missing
fi
