#!/bin/sh
# A statically linked, C-only, VP8-only vpxenc from Debian's libvpx source package, with
# Debian's patches applied (apt-get source runs dpkg-source, which applies debian/patches).
#
# Why static: AWS Lambda's python3.12 runtime (Amazon Linux 2023, glibc 2.34) has none of
# Debian's libvpx.so.7 and we do not assume its libstdc++; a static binary needs neither.
# Why VP8-only and C-only: mu's pass 0 is VP8, and --disable-webm-io --disable-libyuv remove
# libvpx's only C++ (so no libstdc++ gets linked). The remaining configure flags are Debian's
# own (debian/rules) where they touch VP8, so the encoder is configured as /usr/bin/vpxenc is;
# tests/test_lambda_package.py checks its output is byte-identical to that binary's.
#
# Usage: packaging/vpxenc/build.sh   (prints the cached binary's path as its last line)
# The binary is cached outside the repository, keyed by the Debian source version and this
# script's hash: ${XDG_CACHE_HOME:-~/.cache}/excamera/vpxenc-<version>-<hash>/vpxenc.
# VPXENC_DEBIAN_VERSION picks the source version; the default is the installed vpx-tools
# version (the binary the local backend runs), else apt's candidate for vpx-tools.
# Needs: apt-get with a deb-src entry for bookworm, dpkg-dev, gcc, make, nasm or yasm, flock.
set -eu

say() { echo "vpxenc recipe: $*" >&2; }
die() { say "$*"; exit 1; }

here=$(cd "$(dirname "$0")" && pwd)
recipe=$(sha256sum "$here/build.sh" | cut -c1-12)

version=${VPXENC_DEBIAN_VERSION:-}
if [ -z "$version" ]; then
  version=$(dpkg-query -W -f='${Version}' vpx-tools 2>/dev/null || true)
fi
if [ -z "$version" ]; then
  version=$(apt-cache policy vpx-tools 2>/dev/null | awk '/Candidate:/ {print $2}')
fi
case "$version" in
  ""|"(none)") die "no libvpx version known: install vpx-tools or set VPXENC_DEBIAN_VERSION" ;;
esac
case "$version" in
  *[!A-Za-z0-9.+~:-]*) die "VPXENC_DEBIAN_VERSION $version is not a Debian version" ;;
esac

cache_root=${XDG_CACHE_HOME:-$HOME/.cache}/excamera
out_dir=$cache_root/vpxenc-$(printf %s "$version" | tr ':~' '__')-$recipe
out=$out_dir/vpxenc
if [ -x "$out" ]; then
  echo "$out"
  exit 0
fi

for tool in apt-get dpkg-source gcc make strip flock; do
  command -v "$tool" >/dev/null 2>&1 || die "needs $tool (apt-get install dpkg-dev build-essential util-linux)"
done
if command -v nasm >/dev/null 2>&1; then asm=nasm
elif command -v yasm >/dev/null 2>&1; then asm=yasm
else die "needs nasm or yasm (apt-get install nasm)"
fi

mkdir -p "$cache_root"
# One build at a time per key: a parallel `make lambda-zip` and test session wait, then reuse.
exec 9>"$out_dir.lock"
flock 9
if [ -x "$out" ]; then
  echo "$out"
  exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/excamera-vpxenc.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
cd "$work"

say "fetching libvpx $version with apt-get source"
if ! apt-get source -q --only-source "libvpx=$version" >fetch.log 2>&1; then
  tail -n 3 fetch.log >&2
  die "apt-get source libvpx=$version failed; add a deb-src entry for bookworm (see .ci/run)"
fi
src=$(find . -maxdepth 1 -type d -name 'libvpx-*' | head -n 1)
[ -n "$src" ] || die "apt-get source unpacked no libvpx-* directory"
# dpkg-source (3.0 quilt) records what it applied; it must be Debian's whole series.
if [ -s "$src/debian/patches/series" ]; then
  grep -v '^#' "$src/debian/patches/series" | awk 'NF {print $1}' >series.want
  cmp -s series.want "$src/.pc/applied-patches" \
    || die "Debian's patch series was not applied to $src (is dpkg-dev installed?)"
fi

mkdir build
cd build
say "configuring ($asm)"
# Debian's VP8-relevant flags (pic, size limit, postproc, multi-res, temporal denoising),
# plus what makes the binary static and C-only.
if ! LDFLAGS=-static AS=$asm "../$src/configure" \
    --target=x86_64-linux-gcc \
    --as="$asm" \
    --enable-static --disable-shared --enable-pic \
    --enable-vp8 --disable-vp9 \
    --disable-webm-io --disable-libyuv \
    --disable-unit-tests --disable-docs --disable-tools \
    --size-limit=16384x16384 \
    --enable-postproc --enable-multi-res-encoding --enable-temporal-denoising \
    >configure.log 2>&1; then
  tail -n 5 configure.log >&2
  die "configure failed"
fi
say "building (make -j2)"
if ! make -j2 >make.log 2>&1; then
  tail -n 5 make.log >&2
  die "make failed"
fi
[ -x vpxenc ] || die "make produced no vpxenc"
strip vpxenc

mkdir -p "$out_dir"
cp vpxenc "$out_dir/vpxenc.tmp"
{
  echo "source: libvpx $version (apt-get source, Debian patches applied by dpkg-source)"
  echo "recipe: packaging/vpxenc/build.sh sha256 $recipe"
  sed 's/^/patch: /' "../$src/.pc/applied-patches" 2>/dev/null || true
} >"$out_dir/SOURCE.txt"
mv "$out_dir/vpxenc.tmp" "$out"
echo "$out"
