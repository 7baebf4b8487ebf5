#!/bin/sh
# envctl bundle: target @@TARGET@@ for @@PLATFORM@@ (lock sha256 @@LOCK_SHA256@@), made by envctl @@VERSION@@.
# A shell header followed by two payloads: the env (tar, gzip unless packed with --compress none) and the
# locked package archives (tar).
# Installing needs only sh, tar (with gzip) and the usual tail/head/wc: no envctl, conda or network.
#   sh THIS_FILE --help
set -u
HEADER_SIZE=@@HEADER_SIZE@@
ENV_SIZE=@@ENV_SIZE@@
PKGS_SIZE=@@PKGS_SIZE@@
MANIFEST_SHA256=@@MANIFEST_SHA256@@
PKGS_SHA256=@@PKGS_SHA256@@
BUNDLE_ID=@@BUNDLE_ID@@
TARGET=@@TARGET@@
PLATFORM=@@PLATFORM@@
MACHINE=@@MACHINE@@
MAX_PREFIX=@@MAX_PREFIX@@
Z=@@TAR_Z@@
META=share/envctl-bundle

die() { printf 'envctl bundle: %s\n' "$*" >&2; exit "${2:-2}"; }
fail() { printf 'envctl bundle: %s\n' "$1" >&2; exit 1; }

usage() {
  cat <<EOF
envctl bundle of target '$TARGET' for $PLATFORM (an env packed from its lock, with its packages).

  sh $0 --prefix DIR [--certify [--cert-out FILE] [--timeout S]]
      Install the env at DIR: unpack beside DIR, check every file against the
      bundle's manifest, rewrite the recorded prefixes with the env's own python,
      and swap it in when complete. A failed or interrupted install leaves DIR as
      it was. Installing the same bundle again is a no-op.
      --certify runs the bundled smoke export-and-infer with the env's python and
      writes a device certificate (default ./$TARGET.device-cert.json); bring it
      back and file it with \`envctl certify --import FILE\`.
  sh $0 --extract-only DIR
      Unpack without installing, for inspection: DIR/env (files still name the
      placeholder prefix) and DIR/pkgs (the locked conda packages and wheels).
  sh $0 --help
EOF
}

PREFIX=; EXTRACT=; CERTIFY=0; CERT_OUT=; TIMEOUT=
while [ $# -gt 0 ]; do
  case $1 in
    --prefix|--extract-only|--cert-out|--timeout)
      [ $# -ge 2 ] || die "$1 needs a value (see --help)"
      case $1 in --prefix) PREFIX=$2;; --extract-only) EXTRACT=$2;; --cert-out) CERT_OUT=$2;; --timeout) TIMEOUT=$2;; esac
      shift 2;;
    --prefix=*) PREFIX=${1#--prefix=}; shift;;
    --extract-only=*) EXTRACT=${1#--extract-only=}; shift;;
    --certify) CERTIFY=1; shift;;
    -h|--help) usage; exit 0;;
    *) die "unknown argument '$1' (see --help)";;
  esac
done
if [ -n "$PREFIX" ] && [ -n "$EXTRACT" ]; then die "use --prefix or --extract-only, not both"; fi
if [ -z "$PREFIX$EXTRACT" ]; then usage >&2; exit 2; fi

absolute() { case $1 in /*) printf '%s' "$1";; *) printf '%s/%s' "$(pwd)" "$1";; esac; }
SELF=$(absolute "$0")
ACTUAL=$(wc -c < "$SELF" | tr -d ' ')
EXPECTED=$((HEADER_SIZE + ENV_SIZE + PKGS_SIZE))
[ "$ACTUAL" -eq "$EXPECTED" ] || fail "the bundle is damaged: it has $ACTUAL bytes, its header says $EXPECTED (truncated or appended to); nothing was written"
payload() { tail -c +$(($1 + 1)) "$SELF" | head -c "$2"; }
first_error() { grep -m1 -i 'no space left' "$1" || grep -m1 -e '^tar:' -e '^gzip:' "$1" || tail -n 1 "$1"; }
last_member() { grep -v -e '^tar:' -e '^gzip:' "$1" | tail -n 1; }

# ---------------------------------------------------------------- extract only
if [ -n "$EXTRACT" ]; then
  DEST=$(absolute "$EXTRACT")
  if [ -e "$DEST" ] && [ -n "$(ls -A "$DEST" 2>/dev/null)" ]; then fail "$DEST exists and is not empty"; fi
  mkdir -p "$DEST/env" || fail "cannot create $DEST"
  payload "$HEADER_SIZE" "$ENV_SIZE" | tar -x${Z}f - -C "$DEST/env" || fail "the env payload does not unpack (damaged bundle?)"
  payload $((HEADER_SIZE + ENV_SIZE)) "$PKGS_SIZE" | tar -xf - -C "$DEST" || fail "the package payload does not unpack (damaged bundle?)"
  CHECKER=$(command -v python3 || true)
  if [ -n "$CHECKER" ]; then
    "$CHECKER" -I -B "$DEST/env/$META/installer.py" verify --root "$DEST/env" --pkgs "$DEST" \
      --manifest-sha256 "$MANIFEST_SHA256" || exit 1
  fi
  echo "extracted to $DEST: env/ (not relocated: its files name the placeholder prefix) and pkgs/ (the locked archives)"
  exit 0
fi

# ---------------------------------------------------------------- install
DIR=$(absolute "$PREFIX")
while [ "${DIR%/}" != "$DIR" ] && [ "$DIR" != / ]; do DIR=${DIR%/}; done
HERE=$(uname -m)
[ "$HERE" = "$MACHINE" ] || fail "this bundle is for $PLATFORM ($MACHINE); this machine is $HERE"
[ ${#DIR} -le "$MAX_PREFIX" ] || fail "the prefix $DIR is longer than $MAX_PREFIX characters, the most the bundle's binaries can hold"
STATE="$DIR/conda-meta/envctl-state.json"
INSTALLED=0
if [ -e "$DIR" ] || [ -L "$DIR" ]; then
  if [ -f "$STATE" ]; then
    if grep -q "\"bundle_id\": \"$BUNDLE_ID\"" "$STATE" && [ -x "$DIR/bin/python" ]; then INSTALLED=1; fi
  elif [ ! -d "$DIR" ] || [ -n "$(ls -A "$DIR")" ]; then
    fail "$DIR exists and is not an env (no conda-meta/envctl-state.json); refusing to replace it. Remove it yourself or choose another --prefix."
  fi
fi

if [ "$INSTALLED" = 1 ]; then
  echo "$DIR already holds this bundle's env (target $TARGET); nothing to do."
else
  PARENT=$(dirname "$DIR"); NAME=$(basename "$DIR")
  mkdir -p "$PARENT" || fail "cannot create $PARENT"
  for old in "$PARENT/.$NAME.staging-"*; do  # leftovers of an install that was killed
    [ -e "$old" ] || continue
    pid=${old##*.staging-}; pid=${pid%%.*}
    kill -0 "$pid" 2>/dev/null || rm -rf "$old"
  done
  STAGING="$PARENT/.$NAME.staging-$$"
  LOG="$STAGING.log"
  SUM_PID=
  trap '[ -z "$SUM_PID" ] || kill "$SUM_PID" 2>/dev/null; rm -rf "$STAGING" "$LOG" "$STAGING.sum"' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  trap 'exit 129' HUP
  mkdir "$STAGING" || fail "cannot create $STAGING"
  echo "unpacking $TARGET ($PLATFORM) beside $DIR ..."
  # The package payload is only checked, not unpacked: hash it while the env unpacks (the
  # env's python does it afterwards where there is no sha256sum).
  if command -v sha256sum >/dev/null 2>&1; then
    (payload $((HEADER_SIZE + ENV_SIZE)) "$PKGS_SIZE" | sha256sum > "$STAGING.sum") &
    SUM_PID=$!
  fi
  if ! payload "$HEADER_SIZE" "$ENV_SIZE" | tar -x${Z}vf - -C "$STAGING" > "$LOG" 2>&1; then
    if [ -x "$STAGING/bin/python" ] && [ -f "$STAGING/$META/installer.py" ]; then
      "$STAGING/bin/python" -I -B "$STAGING/$META/installer.py" verify --root "$STAGING" --partial \
        --manifest-sha256 "$MANIFEST_SHA256" --target-dir "$DIR" 2>&1 | grep -m1 'first bad file' >&2
    fi
    fail "unpacking failed ($(first_error "$LOG")); last file reached: $(last_member "$LOG"). Nothing was written to $DIR."
  fi
  PY="$STAGING/bin/python"
  [ -x "$PY" ] || fail "the bundle's env has no bin/python for $PLATFORM; nothing was written to $DIR"
  PKGS_CHECKED=
  if [ -n "$SUM_PID" ] && wait "$SUM_PID" && [ "$(cut -d' ' -f1 "$STAGING.sum")" = "$PKGS_SHA256" ]; then
    PKGS_CHECKED=--pkgs-checked  # a mismatch is left to the installer, which names the first bad archive
  fi
  SUM_PID=
  "$PY" -I -B "$STAGING/$META/installer.py" install --root "$STAGING" --prefix "$DIR" --bundle "$SELF" \
    --manifest-sha256 "$MANIFEST_SHA256" --pkgs-offset $((HEADER_SIZE + ENV_SIZE)) --pkgs-size "$PKGS_SIZE" \
    --pkgs-sha256 "$PKGS_SHA256" --bundle-id "$BUNDLE_ID" $PKGS_CHECKED
  rc=$?
  if [ "$rc" -ne 0 ]; then
    [ "$rc" -ge 126 ] && fail "the env's python failed (exit $rc): the bundle is damaged or not for this machine. Nothing was written to $DIR."
    exit "$rc"
  fi
fi

if [ "$CERTIFY" = 1 ]; then
  set -- --prefix "$DIR"
  [ -n "$CERT_OUT" ] && set -- "$@" --out "$(absolute "$CERT_OUT")"
  [ -n "$TIMEOUT" ] && set -- "$@" --timeout "$TIMEOUT"
  "$DIR/bin/python" -I -B "$DIR/$META/devcert.py" "$@"
  exit $?
fi
exit 0
