#!/bin/sh
# envctl bundle: target @@TARGET@@ for @@PLATFORM@@ (lock sha256 @@LOCK_SHA256@@), made by envctl @@VERSION@@.
# A shell header followed by two payloads: the env (tar, gzip unless packed with --compress none) and the
# locked package archives (tar).
# Installing needs only sh, tar (with gzip), sha256sum (or shasum, or openssl) and the usual tail/head/wc/tee:
# no envctl, conda or network. Both payloads are checked against the sha256 below before anything in them runs.
#   sh THIS_FILE --help
set -u
HEADER_SIZE=@@HEADER_SIZE@@
ENV_SIZE=@@ENV_SIZE@@
PKGS_SIZE=@@PKGS_SIZE@@
ENV_SHA256=@@ENV_SHA256@@
MANIFEST_SHA256=@@MANIFEST_SHA256@@
PKGS_SHA256=@@PKGS_SHA256@@
BUNDLE_ID=@@BUNDLE_ID@@
TARGET=@@TARGET@@
PLATFORM=@@PLATFORM@@
MACHINE=@@MACHINE@@
MAX_PREFIX=@@MAX_PREFIX@@
Z=@@TAR_Z@@
META=share/envctl-bundle

die() { printf 'envctl bundle: %s\n' "$1" >&2; exit 2; }
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

PREFIX=; EXTRACT=; CERTIFY=0; CERT_OUT=; TIMEOUT=; TIMEOUT_SET=
while [ $# -gt 0 ]; do
  case $1 in
    --prefix|--extract-only|--cert-out|--timeout)
      [ $# -ge 2 ] || die "$1 needs a value (see --help)"
      case $1 in --prefix) PREFIX=$2;; --extract-only) EXTRACT=$2;; --cert-out) CERT_OUT=$2;; --timeout) TIMEOUT=$2; TIMEOUT_SET=1;; esac
      shift 2;;
    --prefix=*) PREFIX=${1#--prefix=}; shift;;
    --timeout=*) TIMEOUT=${1#--timeout=}; TIMEOUT_SET=1; shift;;
    --cert-out=*) CERT_OUT=${1#--cert-out=}; shift;;
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
# The header's own claims first: sizes are numbers, hashes are sha256, the header ends where it says.
for n in "$HEADER_SIZE" "$ENV_SIZE" "$PKGS_SIZE" "$MAX_PREFIX"; do
  case $n in ''|*[!0-9]*) fail "the bundle's header is damaged (a size field is '$n'); nothing was written";; esac
done
for h in "$ENV_SHA256" "$MANIFEST_SHA256" "$PKGS_SHA256"; do
  case $h in *[!0-9a-f]*) h=;; esac
  [ ${#h} -eq 64 ] || fail "the bundle's header is damaged (a sha256 field is not 64 hex digits); nothing was written"
done
ACTUAL=$(wc -c < "$SELF" | tr -d ' ')
EXPECTED=$((HEADER_SIZE + ENV_SIZE + PKGS_SIZE))
[ "$ACTUAL" -eq "$EXPECTED" ] || fail "the bundle is damaged: it has $ACTUAL bytes, its header says $EXPECTED (truncated or appended to); nothing was written"
[ "$(head -c "$HEADER_SIZE" "$SELF" | tail -n 1)" = "# end of the envctl bundle header" ] ||
  fail "the bundle's header is damaged (HEADER_SIZE does not end the header); nothing was written"
if [ -n "$TIMEOUT_SET" ]; then  # the rule of envctl's own --timeout (devcert.py applies it too): whole seconds, at least 1
  t=${TIMEOUT#-}
  case $t in ''|*[!0-9]*) die "Invalid value for '--timeout': Input should be a valid integer";; esac
  [ "$t" = "$TIMEOUT" ] && [ -n "${t#"${t%%[!0]*}"}" ] ||
    die "Invalid value for '--timeout': Input should be greater than or equal to 1"
fi
payload() { tail -c +$(($1 + 1)) "$SELF" | head -c "$2"; }
# sha256 of stdin with whatever POSIX-ish tool the machine has (coreutils, BSD/macOS/busybox, or openssl).
if command -v sha256sum >/dev/null 2>&1; then hash_stdin() { sha256sum | cut -d' ' -f1; }
elif command -v shasum >/dev/null 2>&1; then hash_stdin() { shasum -a 256 | cut -d' ' -f1; }
elif command -v openssl >/dev/null 2>&1; then hash_stdin() { openssl dgst -sha256 | sed 's/^.*= *//'; }
else fail "cannot check the bundle: this machine has no sha256sum, shasum or openssl; nothing was written"
fi
# $1 file holding a computed sha256, $2 the header's, $3 what: fail unless they are equal.
check_sum() {
  [ "$(cat "$1" 2>/dev/null)" = "$2" ] ||
    fail "the bundle is damaged: its $3 payload has sha256 $(cat "$1" 2>/dev/null), the header says $2; nothing in it was run${4:+. $4}"
}
first_error() { grep -m1 -i 'no space left' "$1" || grep -m1 -e '^tar:' -e '^gzip:' "$1" || tail -n 1 "$1"; }
last_member() { grep -v -e '^tar:' -e '^gzip:' "$1" | tail -n 1; }

# ---------------------------------------------------------------- extract only
if [ -n "$EXTRACT" ]; then
  DEST=$(absolute "$EXTRACT")
  if [ -e "$DEST" ] && [ -n "$(ls -A "$DEST" 2>/dev/null)" ]; then fail "$DEST exists and is not empty"; fi
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/envctl-bundle-check.XXXXXXXX") || fail "cannot create a temporary folder"
  trap 'rm -rf "$WORK"' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  payload "$HEADER_SIZE" "$ENV_SIZE" | hash_stdin > "$WORK/env.sum"
  check_sum "$WORK/env.sum" "$ENV_SHA256" env
  payload $((HEADER_SIZE + ENV_SIZE)) "$PKGS_SIZE" | hash_stdin > "$WORK/pkgs.sum"
  check_sum "$WORK/pkgs.sum" "$PKGS_SHA256" package
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
# The one rule of envctl's core/prefixrule.py: any other character would be read as code by a launcher,
# an activation script or _sysconfigdata once the prefix is written into them.
case $DIR in
  *[!@@PREFIX_CHARS@@]*) fail "refusing the prefix '$(printf '%s' "$DIR" | LC_ALL=C tr -c ' -~' '?')': an env prefix may hold only ASCII letters, digits, space and / . _ + @ -, because it is written into launcher scripts, shell activation scripts and Python files, where any other character could be read as code. Nothing was written.";;
esac
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

MARK=envctl-staging  # inside each staging folder: proof that an install of this bundle format made it
HOST=$(uname -n)
alive() {  # is process $1 running? A process of another user counts as running.
  [ -d "/proc/$1" ] && return 0
  [ -d /proc/self ] && return 1
  err=$(kill -0 "$1" 2>&1) && return 0
  case $err in *ermitted*) return 0;; esac
  return 1
}
stale() {  # $1 is a staging folder left by an install of this same prefix on this host whose processes are all gone
  [ -d "$1" ] && [ ! -L "$1" ] && [ -O "$1" ] && [ -f "$1/$MARK" ] && [ ! -L "$1/$MARK" ] || return 1
  [ "$(head -n 1 "$1/$MARK")" = "envctl-bundle-staging 1" ] || return 1
  grep -Fxq "prefix=$DIR" "$1/$MARK" && grep -Fxq "host=$HOST" "$1/$MARK" || return 1
  pids=$(sed -n 's/^\(installer_\)\{0,1\}pid=\([0-9][0-9]*\)$/\2/p' "$1/$MARK")
  [ -n "$pids" ] || return 1
  for pid in $pids; do alive "$pid" && return 1; done
  return 0
}

if [ "$INSTALLED" = 1 ]; then
  echo "$DIR already holds this bundle's env (target $TARGET); nothing to do."
else
  PARENT=$(dirname "$DIR"); NAME=$(basename "$DIR")
  mkdir -p "$PARENT" || fail "cannot create $PARENT"
  for old in "$PARENT/.$NAME.staging-"*; do  # leftovers of an install that was killed: only folders we can prove are ours
    stale "$old" && rm -rf "$old"
  done
  # A new private folder (mode 700, a name no one could plant a symlink at): the env, the log and the sums go inside.
  STAGING=$(mktemp -d "$PARENT/.$NAME.staging-XXXXXXXX" 2>/dev/null) ||
    { STAGING="$PARENT/.$NAME.staging-$$"; mkdir -m 700 "$STAGING"; } || fail "cannot create a staging folder in $PARENT"
  SUM_PID=; ENV_SUM_PID=
  trap 'for p in $SUM_PID $ENV_SUM_PID; do kill "$p" 2>/dev/null; done; rm -rf "$STAGING"' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  trap 'exit 129' HUP
  printf 'envctl-bundle-staging 1\nprefix=%s\nhost=%s\npid=%s\n' "$DIR" "$HOST" "$$" > "$STAGING/$MARK" ||
    fail "cannot write in $STAGING"
  ROOT="$STAGING/env"; LOG="$STAGING/unpack.log"
  mkdir "$ROOT" && mkfifo "$STAGING/env.fifo" || fail "cannot write in $STAGING"
  echo "unpacking $TARGET ($PLATFORM) beside $DIR ..."
  # Both payloads are hashed while the env unpacks; nothing unpacked runs before both sums are compared.
  (payload $((HEADER_SIZE + ENV_SIZE)) "$PKGS_SIZE" | hash_stdin > "$STAGING/pkgs.sum") &
  SUM_PID=$!
  hash_stdin < "$STAGING/env.fifo" > "$STAGING/env.sum" &
  ENV_SUM_PID=$!
  UNPACKED=1
  payload "$HEADER_SIZE" "$ENV_SIZE" | tee "$STAGING/env.fifo" | tar -x${Z}vf - -C "$ROOT" > "$LOG" 2>&1 || UNPACKED=0
  wait "$ENV_SUM_PID"; ENV_SUM_PID=
  if [ "$UNPACKED" = 0 ]; then
    REACHED="unpacking failed ($(first_error "$LOG")); last file reached: $(last_member "$LOG"). Nothing was written to $DIR."
    # Only a payload that hashed whole and right (say, one that did not fit on the disk) may name the first bad file.
    if [ "$(cat "$STAGING/env.sum")" = "$ENV_SHA256" ] && [ -x "$ROOT/bin/python" ] && [ -f "$ROOT/$META/installer.py" ]; then
      "$ROOT/bin/python" -I -B "$ROOT/$META/installer.py" verify --root "$ROOT" --partial \
        --manifest-sha256 "$MANIFEST_SHA256" --target-dir "$DIR" 2>&1 | grep -m1 'first bad file' >&2
    fi
    fail "$REACHED"
  fi
  check_sum "$STAGING/env.sum" "$ENV_SHA256" env "Nothing was written to $DIR."
  PY="$ROOT/bin/python"
  [ -x "$PY" ] || fail "the bundle's env has no bin/python for $PLATFORM; nothing was written to $DIR"
  PKGS_CHECKED=
  if wait "$SUM_PID" && [ "$(cat "$STAGING/pkgs.sum")" = "$PKGS_SHA256" ]; then
    PKGS_CHECKED=--pkgs-checked  # a mismatch is left to the (now checked) installer, which names the first bad archive
  fi
  SUM_PID=
  STOPPED=; INST_PID=
  trap 'STOPPED=130; [ -z "$INST_PID" ] || kill -TERM "$INST_PID" 2>/dev/null' INT
  trap 'STOPPED=143; [ -z "$INST_PID" ] || kill -TERM "$INST_PID" 2>/dev/null' TERM
  trap 'STOPPED=129; [ -z "$INST_PID" ] || kill -TERM "$INST_PID" 2>/dev/null' HUP
  # In the background: the marker names the installer's pid at once (a second install must see this folder
  # in use even if this shell is killed), and a signal to this shell reaches the installer as SIGTERM at
  # once. (SIGINT is ignored by a background child: Ctrl-C during python's own start-up would be a traceback.)
  "$PY" -I -B "$ROOT/$META/installer.py" install --root "$ROOT" --prefix "$DIR" --bundle "$SELF" \
    --manifest-sha256 "$MANIFEST_SHA256" --pkgs-offset $((HEADER_SIZE + ENV_SIZE)) --pkgs-size "$PKGS_SIZE" \
    --pkgs-sha256 "$PKGS_SHA256" --bundle-id "$BUNDLE_ID" --marker "$STAGING/$MARK" $PKGS_CHECKED &
  INST_PID=$!
  printf 'installer_pid=%s\n' "$INST_PID" >> "$STAGING/$MARK"
  [ -z "$STOPPED" ] || kill -TERM "$INST_PID" 2>/dev/null  # a signal that came just before the start
  while :; do
    wait "$INST_PID"; rc=$?
    kill -0 "$INST_PID" 2>/dev/null || break
  done
  if [ "$rc" -ne 0 ] && [ -n "$STOPPED" ]; then
    printf 'envctl bundle: interrupted. Nothing was written to %s.\n' "$DIR" >&2
    exit "$STOPPED"
  fi
  if [ "$rc" -ne 0 ]; then
    [ "$rc" -ge 126 ] && [ "$rc" -ne 130 ] && [ "$rc" -ne 143 ] &&
      fail "the env's python failed (exit $rc): the bundle is damaged or not for this machine. Nothing was written to $DIR."
    exit "$rc"
  fi
  rm -rf "$STAGING"
  trap - EXIT INT TERM HUP
fi

if [ "$CERTIFY" = 1 ]; then
  set -- --prefix "$DIR"
  [ -n "$CERT_OUT" ] && set -- "$@" --out "$(absolute "$CERT_OUT")"
  [ -n "$TIMEOUT_SET" ] && set -- "$@" --timeout "$TIMEOUT"
  # In the background so that a signal to this shell reaches devcert.py at once (a foreground child would
  # delay the trap until it ends); devcert.py then stops the smoke run's whole session and exits.
  "$DIR/bin/python" -I -B "$DIR/$META/devcert.py" "$@" &
  CERT_PID=$!
  trap 'kill -TERM "$CERT_PID" 2>/dev/null' INT TERM HUP  # TERM: a background child starts with SIGINT ignored
  while :; do
    wait "$CERT_PID"; rc=$?
    kill -0 "$CERT_PID" 2>/dev/null || exit "$rc"
  done
fi
exit 0
# end of the envctl bundle header
