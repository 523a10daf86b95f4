#!/bin/sh
# Installs every package cachefs needs to build, test and benchmark on
# Debian 12. Idempotent; run as root (or through sudo).
set -eu
[ "$(id -u)" = 0 ] || exec sudo "$0" "$@"
export DEBIAN_FRONTEND=noninteractive
pkgs="build-essential autoconf automake libtool pkg-config
      liburing-dev libfuse3-dev fuse3 libjemalloc-dev libnuma-dev
      libxxhash-dev libcmocka-dev libcurl4-openssl-dev libssl-dev
      libexpat1-dev libinih-dev libsystemd-dev libjansson-dev libmicrohttpd-dev
      python3-botocore python3-boto3 python3-torch
      python3-fsspec python3-pytest python3-xxhash python3-requests python3-venv python3-pip python3-setuptools python3-wheel python3-pandas
      prometheus curl fio python3 procps util-linux mount e2fsprogs kmod bc
      s3fs rclone chromium gnuplot-nox nginx-light etcd-server rsync perl"
# Node runs the S3 test server; keep a Node that is already there (its npm
# may come with it, and Debian's npm package would conflict).
command -v npm >/dev/null 2>&1 || pkgs="$pkgs nodejs npm"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
		missing="$missing $p"
done
if [ -n "$missing" ]; then
	apt-get update -q
	# nginx is only a benchmark's server, started on loopback by perf/http.sh,
	# and etcd a test's (tests/integration/cluster.sh): keep their packages
	# from starting (and enabling) system-wide ones on :80 and :2379.
	policy=""
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		policy=yes
	fi
	# shellcheck disable=SC2086
	apt-get install -y -q --no-install-recommends $missing || { [ -z "$policy" ] || rm -f /usr/sbin/policy-rc.d; exit 1; }
	[ -z "$policy" ] || rm -f /usr/sbin/policy-rc.d
	for pkg_svc in nginx-light:nginx etcd-server:etcd; do
		case " $missing " in
		*" ${pkg_svc%%:*} "*) command -v systemctl >/dev/null && systemctl disable "${pkg_svc#*:}" >/dev/null 2>&1 || true ;;
		esac
	done
fi

# The S3 server the tests start (s3rver, version pinned in package-lock.json).
s3dir="$(cd "$(dirname "$0")/../tests/s3" && pwd)"
if [ ! -x "$s3dir/node_modules/.bin/s3rver" ]; then
	(cd "$s3dir" && npm ci --no-audit --no-fund --loglevel=error)
fi
