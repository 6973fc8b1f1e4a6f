#!/usr/bin/env bash
# A node base rootfs tarball from Debian packages (bookworm's nodejs and npm, no Docker Hub),
# made with mmdebstrap and cached, since a cold make takes 1-2 minutes:
#
#   scripts/make-node-base.sh [OUT.tar]      # prints the cached tarball's path on stdout
#   imagetool import -e PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
#       --cmd '["node"]' "$(scripts/make-node-base.sh)" node:debian
#
# The cache ($IMAGETOOL_TEST_CACHE, default /var/cache/imagetool-tests, under node-base/) is
# keyed by the exact versions of every package apt would install plus this script's own text,
# resolved from a private apt state (not the host's: its nodejs is nodesource's, pinned).
# The .deb files are kept too (mmdebstrap's sync-in/sync-out hooks), so a new nodejs security
# release re-downloads only what changed. Without a network it falls back to the newest cached
# tarball. Needs root and mmdebstrap (scripts/install.sh installs it).
set -euo pipefail

SUITE=${NODE_BASE_SUITE:-bookworm}
MIRROR=${NODE_BASE_MIRROR:-http://deb.debian.org/debian}
SECURITY=${NODE_BASE_SECURITY:-http://deb.debian.org/debian-security}
PACKAGES=(nodejs npm)
cache=${IMAGETOOL_TEST_CACHE:-/var/cache/imagetool-tests}/node-base
out=${1:-}

log() { echo "make-node-base: $*" >&2; }
command -v mmdebstrap >/dev/null || { log "mmdebstrap missing (apt-get install mmdebstrap)"; exit 1; }

mkdir -p "$cache/apt/empty" "$cache/apt/lists/partial" "$cache/apt/cache/archives/partial" "$cache/debs"
exec 9>"$cache/lock"
flock 9   # one maker at a time: the others then find the tarball made

sources="deb $MIRROR $SUITE main
deb $SECURITY $SUITE-security main"
printf '%s\n' "$sources" >"$cache/apt/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$cache/apt/sources.list" -o "Dir::Etc::SourceParts=$cache/apt/empty"
          -o "Dir::State::Lists=$cache/apt/lists" -o "Dir::Cache=$cache/apt/cache"
          -o Dir::State::status=/dev/null -o Dir::Etc::Preferences=/dev/null
          -o "Dir::Etc::PreferencesParts=$cache/apt/empty" -o APT::Install-Recommends=false
          -o APT::Sandbox::User=root -o Debug::NoLocking=true)

pick() {
  if [ -n "$out" ]; then cp --reflink=auto "$1" "$out" && echo "$out"; else echo "$1"; fi
}

if ! apt-get "${apt_opts[@]}" -q --error-on=any update >"$cache/apt/update.log" 2>&1; then
  newest=$(ls -t "$cache"/node-base-*.tar 2>/dev/null | head -n1 || true)
  if [ -n "$newest" ]; then
    log "apt-get update failed (see $cache/apt/update.log); using the cached $newest"
    pick "$newest"
    exit 0
  fi
  cat "$cache/apt/update.log" >&2
  exit 1
fi
# every package and version of the install, from an empty system: the cache key
# (mmdebstrap's apt variant: the Essential:yes set, apt, then ours)
plan=$(apt-get "${apt_opts[@]}" -s install '?essential' apt "${PACKAGES[@]}" | grep '^Inst ' | sort)
key=$( { cat "$0"; printf '%s\n' "$SUITE" "$MIRROR" "$SECURITY" "$plan"; } | sha256sum | cut -c1-16)
tarball="$cache/node-base-$key.tar"
log "$(grep -E '^Inst (nodejs|npm) ' <<<"$plan" | cut -d' ' -f2,3 | tr -d '(' | paste -sd' ') ($(wc -l <<<"$plan") packages), key $key"

if [ ! -s "$tarball" ]; then
  log "making $tarball with mmdebstrap"
  started=$SECONDS
  tmp="$tarball.tmp.$$"
  trap 'rm -f "$tmp"' EXIT
  # no docs, man pages or translations: smaller layers; keep the copyright files. No fsync
  # per package either (force-unsafe-io): nothing is used before the tarball is whole.
  mmdebstrap --mode=root --variant=apt --include="$(IFS=,; echo "${PACKAGES[*]}")" \
    --dpkgopt=force-unsafe-io \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --skip=essential/unlink \
    --setup-hook='mkdir -p "$1"/var/cache/apt/archives/' \
    --setup-hook="sync-in $cache/debs /var/cache/apt/archives/" \
    --customize-hook="sync-out /var/cache/apt/archives $cache/debs" \
    --format=tar "$SUITE" "$tmp" "$sources" </dev/null >&2
  mv "$tmp" "$tarball"
  trap - EXIT
  log "made in $((SECONDS - started))s"
  # older tarballs (other versions) and superseded .debs are not needed any more
  find "$cache" -maxdepth 1 -name 'node-base-*.tar' ! -name "${tarball##*/}" -delete
  keep=$(sed -E 's/^Inst ([^ ]+) \(([^ ]+) .*\[([a-z0-9]+)\]\).*/\1_\2_\3.deb/; s/:/%3a/g' <<<"$plan")
  for deb in "$cache"/debs/*.deb; do
    grep -qxF "${deb##*/}" <<<"$keep" || rm -f "$deb"
  done
fi
pick "$tarball"
