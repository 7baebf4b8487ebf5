"""envctl bundle installer: check, relocate and swap in an unpacked env. Standard library only.

Shipped inside every bundle (share/envctl-bundle/installer.py) and run by the
bundle's sh header with the unpacked env's own python (`python -I -B`), so the
device needs no envctl. Python 3.8+ syntax.

  installer.py install --root STAGING --prefix DIR --bundle FILE --manifest-sha256 H
                       --pkgs-offset N --pkgs-size N --pkgs-sha256 H --bundle-id ID
      check every file of STAGING against the manifest, and the package payload
      of FILE; rewrite the placeholder prefix to DIR in every recorded file
      (text: replaced; binary: replaced in place, NUL-padded, as conda does;
      shebangs that would break get conda's /bin/sh trampoline); record the
      env's state; swap STAGING in at DIR atomically.
  installer.py verify --root ENV [--pkgs DIR] [--partial] --manifest-sha256 H
      only the checks (--extract-only, and naming the bad file of a broken unpack).

Exit 0 done; 1 a check failed or the install could not finish (nothing swapped in); 2 bad arguments.
"""
import argparse
import hashlib
import io
import json
import os
import re
import shutil
import signal
import stat
import sys
import tarfile
from concurrent.futures import ThreadPoolExecutor

# prefixrule.py ships beside this file (envctl's core/prefixrule.py: the one rule for env prefixes);
# `python -I` leaves the script's folder off sys.path, so it is put there by hand.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    from prefixrule import prefix_problem
except ImportError:  # imported as envctl.pack.installer on the host (OCI images): envctl's own copy
    from envctl.core.prefixrule import prefix_problem
finally:
    del sys.path[0]

META = os.path.join("share", "envctl-bundle")
MANIFEST = os.path.join(META, "manifest.json")
STATE = os.path.join("conda-meta", "envctl-state.json")
MAX_SHEBANG = 127  # Linux's limit on a #! line


class Refused(Exception):
    pass


def write_new(path, data, mode=0o644):
    """Write `data` to a new file at `path` (never through a symlink or over an existing file) and return."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def replace_file(path, data, mode=0o644):
    """`path` now holds `data`: a fresh temp file beside it renamed over it (a new inode, atomic)."""
    tmp = path + ".envctl-tmp"
    write_new(tmp, data, mode)
    os.chmod(tmp, mode)  # exactly `mode`, whatever the umask
    os.replace(tmp, path)


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_manifest(root, expected):
    path = os.path.join(root, MANIFEST)
    try:
        actual = sha256_file(path)
    except OSError:
        raise Refused("the bundle is damaged: first bad file: %s (missing)" % MANIFEST) from None
    if actual != expected:
        raise Refused("the bundle is damaged: first bad file: %s (sha256 %s, the header says %s)" % (MANIFEST, actual, expected))
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def check_tree(root, manifest, partial=False):
    """Every file and symlink against the manifest, in manifest order; Refused naming the first bad one."""
    files = manifest["files"]
    names = sorted(files)

    def check(rel):
        path = os.path.join(root, rel)
        try:
            st = os.lstat(path)
        except OSError:
            return rel, "missing"
        if not stat.S_ISREG(st.st_mode):
            return rel, "not a regular file"
        if st.st_size != files[rel][1]:
            return rel, "%d bytes, expected %d" % (st.st_size, files[rel][1])
        if sha256_file(path) != files[rel][0]:
            return rel, "sha256 differs from the manifest"
        return None

    with ThreadPoolExecutor(max_workers=4) as pool:
        for bad in pool.map(check, names, chunksize=32):
            if bad:
                raise Refused("the bundle is damaged: first bad file: %s (%s)" % bad)
    for rel, target in sorted(manifest.get("symlinks", {}).items()):
        path = os.path.join(root, rel)
        if not os.path.islink(path) or os.readlink(path) != target:
            raise Refused("the bundle is damaged: first bad file: %s (symlink, expected -> %s)" % (rel, target))
    if not partial:
        extra = []
        for dirpath, dirnames, filenames in os.walk(root):
            for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
                rel = os.path.relpath(os.path.join(dirpath, name), root)
                if rel not in files and rel not in manifest.get("symlinks", {}) and rel != MANIFEST:
                    extra.append(rel)
        if extra:
            raise Refused("the bundle is damaged: %s is not in its manifest" % sorted(extra)[0])


def check_pkgs_stream(bundle, offset, size, expected, manifest):
    """The package payload's sha256; when it differs, the first archive inside that differs."""
    digest = hashlib.sha256()
    with open(bundle, "rb") as handle:
        handle.seek(offset)
        left = size
        while left:
            chunk = handle.read(min(left, 1 << 20))
            if not chunk:
                break
            digest.update(chunk)
            left -= len(chunk)
    if digest.hexdigest() == expected:
        return
    packages = manifest.get("packages", {})
    seen = set()
    try:
        with open(bundle, "rb") as handle:
            handle.seek(offset)
            with tarfile.open(fileobj=_Window(handle, size), mode="r|") as tar:
                for member in tar:
                    if not member.isfile():
                        continue
                    seen.add(member.name)
                    want = packages.get(member.name)
                    data = tar.extractfile(member)  # a regular file: never None
                    got = hashlib.sha256()
                    while data is not None:
                        chunk = data.read(1 << 20)
                        if not chunk:
                            break
                        got.update(chunk)
                    if want is None or got.hexdigest() != want[0]:
                        raise Refused("the bundle is damaged: first bad file: %s" % member.name)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise Refused("the bundle is damaged: its package payload does not read (%s)" % exc) from None
    missing = sorted(set(packages) - seen)
    raise Refused("the bundle is damaged: first bad file: %s" % (missing[0] if missing else "the package payload"))


class _Window(io.RawIOBase):
    """A read-only view of `size` bytes of a file from its current position."""

    def readable(self):
        return True

    def __init__(self, handle, size):
        self.handle, self.left = handle, size

    def read(self, n=-1):
        n = self.left if n is None or n < 0 else min(n, self.left)
        data = self.handle.read(n)
        self.left -= len(data)
        return data


def check_pkgs_dir(dest, manifest):
    for rel, (sha, _size) in sorted(manifest.get("packages", {}).items()):
        path = os.path.join(dest, rel)
        if not os.path.isfile(path) or sha256_file(path) != sha:
            raise Refused("the bundle is damaged: first bad file: %s" % rel)


# ---------------------------------------------------------------- relocation


def _sh_quote(path):
    return '"%s"' % re.sub(r'([\\"$`])', r"\\\1", path)


def fix_shebang(data):
    """A #! line that Linux would split (spaces) or cut (over 127 bytes) becomes conda's sh trampoline."""
    if not data.startswith(b"#!"):
        return data
    end = data.find(b"\n")
    line = data[2:end if end >= 0 else len(data)].decode("utf-8", "surrogateescape").strip()
    rest = data[end + 1:] if end >= 0 else b""
    match = re.match(r"^(.*?/bin/python[0-9.]*)(\s.*)?$", line)
    if not match or (" " not in match.group(1) and len(line) + 2 <= MAX_SHEBANG):
        return data
    interp, args = match.group(1), (match.group(2) or "").strip()
    args = (" " + args) if args else ""
    head = "#!/bin/sh\n'''exec' %s%s \"$0\" \"$@\" #'''\n" % (_sh_quote(interp), args)
    return head.encode("utf-8", "surrogateescape") + rest


def relocate_bytes(data, mode, old, new):
    if mode == "text":
        data = data.replace(old, new)
        return fix_shebang(data)
    # Binary: each C string holding the old prefix keeps its length, NUL-padded (conda's binary_replace).
    pattern = re.compile(re.escape(old) + b"([^\0]*?)\0")

    def repl(match):
        text = match.group()
        count = text.count(old)
        return text.replace(old, new) + b"\0" * ((len(old) - len(new)) * count)

    out = pattern.sub(repl, data)
    if len(out) != len(data):
        raise Refused("binary prefix replacement changed the size of a file")
    return out


def relocate(root, manifest, prefix):
    old = manifest["placeholder"].encode()
    new = prefix.encode("utf-8", "surrogateescape")
    if len(new) > len(old):
        raise Refused("the prefix %s is longer than the %d bytes the bundle's binaries can hold" % (prefix, len(old)))
    for rel, mode in manifest["prefix_files"]:
        path = os.path.join(root, rel)
        with open(path, "rb") as handle:
            data = handle.read()
        out = relocate_bytes(data, mode, old, new)
        if out == data:
            continue
        replace_file(path, out, stat.S_IMODE(os.lstat(path).st_mode))  # a new inode: tar may have hardlinked it
    for rel, target in manifest.get("symlinks", {}).items():
        if manifest["placeholder"] in target:
            path = os.path.join(root, rel)
            os.unlink(path)
            os.symlink(target.replace(manifest["placeholder"], prefix), path)


# ---------------------------------------------------------------- swap


def _exchange(a, b):
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)  # TypeError on Windows
        renameat2 = libc.renameat2
    except (OSError, AttributeError, TypeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(-100, os.fsencode(a), -100, os.fsencode(b), 2) == 0:  # AT_FDCWD, RENAME_EXCHANGE
        return True
    err = ctypes.get_errno()
    if err in (38, 22, 95):  # ENOSYS, EINVAL, EOPNOTSUPP
        return False
    raise OSError(err, os.strerror(err), a)


def swap_in(staging, prefix):
    if not os.path.lexists(prefix):
        os.rename(staging, prefix)
        return
    if os.path.isdir(prefix) and not os.path.islink(prefix) and not os.listdir(prefix):
        os.rmdir(prefix)
        os.rename(staging, prefix)
        return
    if _exchange(staging, prefix):
        shutil.rmtree(staging, ignore_errors=True)  # now the old env
        return
    old = prefix + ".old-%d" % os.getpid()
    os.rename(prefix, old)
    try:
        os.rename(staging, prefix)
    except OSError:
        os.rename(old, prefix)
        raise
    shutil.rmtree(old, ignore_errors=True)


def scrub_meta(root, prefix):
    """The bundle's own records name the placeholder; once relocated, they name the prefix instead."""
    for name in ("info.json", "manifest.json"):
        path = os.path.join(root, META, name)
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        data["relocated_from_placeholder_of_length"] = len(data.pop("placeholder", ""))
        data["installed_prefix"] = prefix
        replace_file(path, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode("utf-8"))


def write_state(root, manifest, prefix, bundle_id):
    import datetime
    import platform

    state = {
        "lock_sha256": manifest["lock_sha256"],
        "target": manifest["target"],
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host_platform": manifest["platform"],
        "envctl_version": manifest["envctl_version"],
        "installed_from": "bundle",
        "bundle_id": bundle_id,
        "packages": manifest["counts"],
        "python_version": manifest.get("python_version") or platform.python_version(),
        "prefix": prefix,
    }
    replace_file(os.path.join(root, STATE), (json.dumps(state, indent=2) + "\n").encode("utf-8"))


def main(argv):
    parser = argparse.ArgumentParser(prog="installer.py")
    parser.add_argument("command", choices=["install", "verify"])
    parser.add_argument("--root", required=True)
    parser.add_argument("--prefix")
    parser.add_argument("--target-dir")
    parser.add_argument("--bundle")
    parser.add_argument("--pkgs")
    parser.add_argument("--partial", action="store_true")
    parser.add_argument("--manifest-sha256", required=True)
    parser.add_argument("--pkgs-offset", type=int)
    parser.add_argument("--pkgs-size", type=int)
    parser.add_argument("--pkgs-sha256")
    parser.add_argument("--pkgs-checked", action="store_true", help="the header already matched the package payload's sha256")
    parser.add_argument("--bundle-id")
    parser.add_argument("--marker", help="the staging folder's ownership marker: this process's pid is added to it")
    args = parser.parse_args(argv)
    where = args.prefix or args.target_dir
    tail = (" Nothing was written to %s." % where) if where else ""
    for signum in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if signum is not None:
            signal.signal(signum, _interrupted)
    try:
        return _run(args, tail)
    except KeyboardInterrupt:  # Ctrl-C (run by hand), SIGTERM, SIGHUP: the header removes the staging folder
        if not args.marker:  # under the header, which says it once
            sys.stderr.write("envctl bundle: interrupted.%s\n" % tail)
        return 130


def _interrupted(signum, frame):
    raise KeyboardInterrupt


def _claim(marker):
    """Add this process to the staging folder's marker, so a second install sees the folder is in use."""
    fd = os.open(marker, os.O_WRONLY | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "a") as handle:
        handle.write("installer_pid=%d\n" % os.getpid())


def _run(args, tail):
    try:
        if args.marker:
            _claim(args.marker)
        if args.command == "install":
            problem = prefix_problem(args.prefix)
            if problem:
                raise Refused("refusing the prefix %r: %s" % (args.prefix, problem))
        manifest = load_manifest(args.root, args.manifest_sha256)
        check_tree(args.root, manifest, partial=args.partial)
        if args.command == "verify":
            if args.pkgs:
                check_pkgs_dir(args.pkgs, manifest)
            print("every file matches the bundle's manifest")
            return 0
        if not args.pkgs_checked:
            check_pkgs_stream(args.bundle, args.pkgs_offset, args.pkgs_size, args.pkgs_sha256, manifest)
        print("checked %d files against the manifest; relocating to %s ..." % (len(manifest["files"]), args.prefix))
        relocate(args.root, manifest, args.prefix)
        scrub_meta(args.root, args.prefix)
        write_state(args.root, manifest, args.prefix, args.bundle_id)
        deferred = {signal.SIGINT, signal.SIGTERM} | ({signal.SIGHUP} if hasattr(signal, "SIGHUP") else set())
        if hasattr(signal, "pthread_sigmask"):
            signal.pthread_sigmask(signal.SIG_BLOCK, deferred)  # the swap is never left half done
        try:
            swap_in(args.root, args.prefix)
        finally:
            for signum in deferred:  # a signal that came during the swap is dropped: the install is complete
                signal.signal(signum, signal.SIG_IGN)
            if hasattr(signal, "pthread_sigmask"):
                signal.pthread_sigmask(signal.SIG_UNBLOCK, deferred)
    except Refused as exc:
        sys.stderr.write("envctl bundle: %s.%s\n" % (exc, tail))
        return 1
    except OSError as exc:
        sys.stderr.write("envctl bundle: installing failed: %s (%s).%s\n" % (exc.strerror or exc, exc.filename or "", tail))
        return 1
    print("installed %s (%s) at %s" % (manifest["target"], manifest["platform"], args.prefix))
    print("use it: %s/bin/python    (or put %s/bin first on PATH)" % (args.prefix, args.prefix))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
