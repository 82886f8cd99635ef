#!/bin/sh
# install_test.sh BUILD_DIR WORK_DIR CXX [MAX_ISA]: installs BUILD_DIR with cmake --install, moves
# the tree elsewhere (the package files must be relocatable), then builds tests/consumer/main.cpp
# against it twice, as a downstream user would: a CMake project with
# find_package(mercury CONFIG REQUIRED), and a plain compiler line with pkg-config. Both must
# use the compiled kernels with the best ISA this CPU has (capped by MAX_ISA, the build's
# MERCURY_MAX_ISA), and train.
set -eu
build=$1 work=$2 cxx=$3 cap=${4:-}
here=$(cd "$(dirname "$0")" && pwd)
fail() { echo "install_test: $*" >&2; exit 1; }

rm -rf "$work" && mkdir -p "$work"
cmake --install "$build" --prefix "$work/stage" >"$work/install.log" || fail "cmake --install failed (see $work/install.log)"
mv "$work/stage" "$work/prefix"
p=$work/prefix

# The layout: every header of the repo's mercury/ kernels/ net/ models/ folders, nothing else.
src=$(cd "$here/../.." && pwd)
want=$(cd "$src" && find mercury kernels net models -name '*.hpp' ! -path 'kernels/src/*' | sort)
have=$(cd "$p/include/mercury" && find . -type f | sed 's|^\./||' | sort)
[ "$want" = "$have" ] || { echo "$want" >"$work/want"; echo "$have" >"$work/have"; fail "installed headers differ from the repo's (diff $work/want $work/have)"; }
for f in lib/libmercury_kernels.a lib/cmake/mercury/mercuryConfig.cmake lib/pkgconfig/mercury.pc; do
  [ -f "$p/$f" ] || fail "expected $p/$f after cmake --install, found nothing"
done

isa=ref
if grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo; then isa=avx2; fi
if grep -qw avx512f /proc/cpuinfo && grep -qw avx512bw /proc/cpuinfo &&
   grep -qw avx512dq /proc/cpuinfo && grep -qw avx512vl /proc/cpuinfo && [ $isa = avx2 ]; then isa=avx512; fi
case "$cap:$isa" in
  ref:*) isa=ref ;;
  avx2:avx512) isa=avx2 ;;
esac

cp "$here/main.cpp" "$here/CMakeLists.txt" "$work/"
launcher=""
command -v ccache >/dev/null && launcher="-DCMAKE_CXX_COMPILER_LAUNCHER=ccache"
cmake -S "$work" -B "$work/cmake-build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER="$cxx" \
  -DCMAKE_PREFIX_PATH="$p" $launcher >"$work/configure.log" 2>&1 || { cat "$work/configure.log"; fail "find_package(mercury) consumer: configure failed"; }
cmake --build "$work/cmake-build" >"$work/build.log" 2>&1 || { cat "$work/build.log"; fail "find_package(mercury) consumer: build failed"; }
"$work/cmake-build/consumer" --expect compiled $isa

PKG_CONFIG_PATH="$p/lib/pkgconfig" pkg-config --exists mercury || fail "pkg-config does not find mercury in $p/lib/pkgconfig"
cflags=$(PKG_CONFIG_PATH="$p/lib/pkgconfig" pkg-config --cflags mercury)
libs=$(PKG_CONFIG_PATH="$p/lib/pkgconfig" pkg-config --libs mercury)
# shellcheck disable=SC2086
{ ${launcher:+ccache} "$cxx" -O2 $cflags -c "$work/main.cpp" -o "$work/consumer-pc.o" &&
  "$cxx" "$work/consumer-pc.o" -o "$work/consumer-pc" $libs; } || fail "pkg-config consumer: build failed"
"$work/consumer-pc" --expect compiled $isa
echo "install_test: find_package and pkg-config consumers built against the relocated $p"
