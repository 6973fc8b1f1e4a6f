#!/usr/bin/env bash
# runc 1.1.5's own integration suite (tests/integration/*.bats) against a runtime binary.
#
#   scripts/runc-suite.sh [--runc BINARY] [--out DIR] [FILE.bats ...]
#
# Nothing of runc is kept in this repository: the script fetches Debian's runc source package
# (the same 1.1.5 Debian ships as /usr/sbin/runc) into a work directory, builds the suite's Go
# helpers (recvtty, sd-helper, seccompagent) from it with Debian's Go packages, and makes the two
# images the suite expects offline: a busybox rootfs in the shape of docker's busybox image
# (from busybox-static) and a Debian minbase (mmdebstrap). Each file runs under `script` (a tty)
# in private mount and pid namespaces, as the issue that asked for it ran it, with a 300 s bound.
# criu is hidden from the suite (as on the machine the issue was filed from) so the checkpoint
# file skips instead of depending on whether criu happens to be installed.
#
# Needs root and Debian's package mirror (deb-src of the configured suite). Not part of
# scripts/test.sh: it installs build dependencies and takes minutes; run it by hand or in a
# review. Exit status: 0 when no test failed and no file timed out.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
RUNC_BIN="$REPO/.venv/bin/pyrunc"
WORK=${RUNC_SUITE_WORK:-/var/tmp/runc-suite}
OUT=""
FILES=()
while (($#)); do
  case "$1" in
    --runc) RUNC_BIN=$(readlink -f "$2"); shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    -*) echo "runc-suite.sh: unknown flag $1" >&2; exit 2 ;;
    *) FILES+=("$1"); shift ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "runc-suite.sh: must run as root" >&2; exit 2; }
[ -x "$RUNC_BIN" ] || { echo "runc-suite.sh: --runc $RUNC_BIN is not executable" >&2; exit 2; }
OUT=${OUT:-$WORK/out-$(basename "$RUNC_BIN")}
mkdir -p "$WORK" "$OUT"

# -- the source, from Debian's mirror (a private sources list: the host's stays as it is) ----
SRC="$WORK/src"
if [ ! -d "$SRC/tests/integration" ]; then
  suite=$(. /etc/os-release && echo "$VERSION_CODENAME")
  mkdir -p "$WORK/apt/lists/partial"
  cat > "$WORK/apt/debian.sources" <<EOF
Types: deb deb-src
URIs: http://deb.debian.org/debian
Suites: $suite
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  APT=(-o Dir::Etc::SourceList="$WORK/apt/debian.sources" -o Dir::Etc::SourceParts=/dev/null
       -o Dir::State::Lists="$WORK/apt/lists")
  apt-get "${APT[@]}" update -q
  DEBIAN_FRONTEND=noninteractive apt-get "${APT[@]}" build-dep -y -q runc
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q bats gawk jq mmdebstrap xz-utils
  (cd "$WORK" && apt-get "${APT[@]}" source --download-only runc)
  tarball=$(ls "$WORK"/runc_*.orig.tar.* | head -1)
  rm -rf "$WORK/unpack" && mkdir -p "$WORK/unpack"
  tar -C "$WORK/unpack" -xf "$tarball"
  mv "$WORK"/unpack/runc-* "$SRC"
fi

# -- the Go helpers the suite runs (GOPATH mode on Debian's golang-*-dev packages) --------------
GOP="$WORK/gopath"
mkdir -p "$GOP/src/github.com/opencontainers"
ln -sfn "$SRC" "$GOP/src/github.com/opencontainers/runc"
for cmd in recvtty sd-helper seccompagent; do
  bin="$SRC/contrib/cmd/$cmd/$cmd"
  [ -x "$bin" ] && continue
  (cd "$GOP/src/github.com/opencontainers/runc/contrib/cmd/$cmd" &&
   GO111MODULE=off GOPATH="$GOP:/usr/share/gocode" GOCACHE="$WORK/gocache" \
     go build -tags seccomp -o "$bin" .)
done

# -- the two images, made offline ----------------------------------------------------------------
DATA="$SRC/tests/integration/testdata"
arch=$(go env GOARCH)
if [ ! -s "$DATA/busybox-$arch.tar.xz" ]; then
  bb="$WORK/busybox-rootfs"
  rm -rf "$bb" && mkdir -p "$bb"/{bin,dev,etc/network,home,root,tmp,usr/sbin,var/spool/mail,var/www}
  chmod 1777 "$bb/tmp"
  cp /bin/busybox "$bb/bin/busybox"
  for app in $(/bin/busybox --list); do
    [ "$app" = busybox ] || ln -sf busybox "$bb/bin/$app"
  done
  # docker's busybox image: system users only (no uid 1000), no /proc or /sys directory
  printf '%s\n' root:x:0:0:root:/root:/bin/sh daemon:x:1:1:daemon:/usr/sbin:/bin/false \
    bin:x:2:2:bin:/bin:/bin/false sys:x:3:3:sys:/dev:/bin/false sync:x:4:100:sync:/bin:/bin/sync \
    mail:x:8:8:mail:/var/spool/mail:/bin/false www-data:x:33:33:www-data:/var/www:/bin/false \
    operator:x:37:37:Operator:/var:/bin/false nobody:x:65534:65534:nobody:/home:/bin/false \
    > "$bb/etc/passwd"
  printf '%s\n' root:x:0: daemon:x:1: bin:x:2: sys:x:3: adm:x:4: tty:x:5: disk:x:6: lp:x:7: \
    mail:x:8: kmem:x:9: wheel:x:10:root cdrom:x:11: dialout:x:18: floppy:x:19: video:x:28: \
    audio:x:29: tape:x:32: www-data:x:33: operator:x:37: utmp:x:43: plugdev:x:46: staff:x:50: \
    lock:x:54: netdev:x:82: users:x:100: nogroup:x:65534: > "$bb/etc/group"
  tar -C "$bb" -cJf "$DATA/busybox-$arch.tar.xz" .
fi
if [ ! -s "$DATA/debian-$arch.tar.xz" ]; then
  mmdebstrap --variant=minbase "$(. /etc/os-release && echo "$VERSION_CODENAME")" \
    "$WORK/debian.tar"
  xz -T2 -c "$WORK/debian.tar" > "$DATA/debian-$arch.tar.xz"
  rm -f "$WORK/debian.tar"
fi

# -- run ---------------------------------------------------------------------------------------
cd "$SRC/tests/integration"
((${#FILES[@]})) || FILES=(*.bats)
HIDE_CRIU=""
if command -v criu >/dev/null; then
  HIDE_CRIU="mount --bind /dev/null $(command -v criu) && "
fi
# runc's helpers make a parent cgroup for every controller /proc/cgroups lists; where one is not
# mounted (hybrid hosts) `mkdir -p` leaves a plain directory on the /sys/fs/cgroup tmpfs, which
# later confuses other engines (conmon writes "tasks" files there). Remove what was not there.
CG_BEFORE=$(ls /sys/fs/cgroup)
cleanup_cgroup_dirs() {
  local d
  for d in /sys/fs/cgroup/*; do
    grep -qxF "$(basename "$d")" <<<"$CG_BEFORE" && continue
    mountpoint -q "$d" || rm -rf "$d"
  done
}
trap cleanup_cgroup_dirs EXIT
total_ok=0 total_fail=0 total_skip=0 hung=0
printf '%-24s %4s %7s %5s  %s\n' file ok "not ok" skip status
for f in "${FILES[@]}"; do
  n=${f%.bats}
  set +e
  RUNC="$RUNC_BIN" timeout -k 10 300 unshare -m -p -f --mount-proc --propagation private \
    sh -c "${HIDE_CRIU}exec script -qec 'bats -t $f' /dev/null" > "$OUT/$n.tap" 2>&1
  rc=$?
  set -e
  ok=$(grep -E '^ok ' "$OUT/$n.tap" | grep -vc '# skip' || true)
  skip=$(grep -Ec '^ok .*# skip' "$OUT/$n.tap" || true)
  fail=$(grep -Ec '^not ok ' "$OUT/$n.tap" || true)
  status=exit:$rc
  if [ "$rc" -ge 124 ]; then status="TIMED OUT (300 s)"; hung=$((hung + 1)); fi
  printf '%-24s %4d %7d %5d  %s\n' "$n" "$ok" "$fail" "$skip" "$status"
  total_ok=$((total_ok + ok)) total_fail=$((total_fail + fail)) total_skip=$((total_skip + skip))
done
printf '%-24s %4d %7d %5d  %d timed out\n' total "$total_ok" "$total_fail" "$total_skip" "$hung"
echo "runtime: $RUNC_BIN; TAP per file in $OUT"
[ "$total_fail" -eq 0 ] && [ "$hung" -eq 0 ]
