"""Which paths may be an env prefix: the one rule for `create`, the bundle installer, OCI images and `shell`.

A prefix is written, byte for byte, into files that other programs read as
code: console-script launchers (`#!/bin/sh` trampolines that uv, rattler and
the bundle installer write when a shebang would be too long or hold a space),
activation scripts for bash, zsh, fish, xonsh, PowerShell and cmd.exe, and
Python source (`_sysconfigdata*.py`). Those files are written by tools envctl
does not control, some of them without quoting, and no single quoting is right
for all of them: `$(...)`, a backtick or `"` runs in sh, `'`, `\\` or a newline
breaks Python source, `%` expands in cmd.exe, `:` splits PATH. So, like conda's
constructor installers, envctl refuses such a prefix up front instead of
trying to escape it everywhere.

Allowed: ASCII letters and digits, space, and `/ . _ + @ -` (on Windows also
`\\` and a leading drive `C:`). Space stays allowed: every launcher envctl
writes quotes it, and shebangs with a space get the sh trampoline. Non-ASCII
letters are refused too: cmd.exe and Windows PowerShell read scripts in the
console's code page, not UTF-8.

Standard library only, Python 3.8 syntax: bundles ship this file as
share/envctl-bundle/prefixrule.py and their installer imports it on the device,
where envctl is not installed; the bundle's sh header uses SH_BRACKET.
"""
import os
import re

ALLOWED_PUNCTUATION = "/._+@- "
_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
# For a sh `case` pattern `*[!...]*`: every allowed character spelled out (a range such as A-Z
# depends on the locale), the space escaped, `-` last so it is literal.
SH_BRACKET = _LETTERS + "/._+@\\ -"
_NAMES = {"\n": "a newline", "\r": "a carriage return", "\t": "a tab", "\0": "a NUL", "'": "a single quote (')",
          '"': 'a double quote (")', "`": "a backtick (`)", "$": "a dollar sign ($)", "\\": "a backslash (\\)"}
DOC = "docs/security.md"


def prefix_problem(prefix):
    """None when `prefix` (a str) may be an env prefix; otherwise what is wrong with it, in words."""
    text = str(prefix)
    if os.name == "nt":
        text = re.sub(r"\A[A-Za-z]:", "", text).replace("\\", "/")
    for char in text:
        if char not in _LETTERS and char not in ALLOWED_PUNCTUATION:
            name = _NAMES.get(char)
            if name is None:
                name = "%r (U+%04X)" % (char, ord(char)) if char.isprintable() else "a control character (U+%04X)" % ord(char)
            return ("it contains %s. An env prefix may hold only ASCII letters, digits, space and / . _ + @ -, "
                    "because it is written into launcher scripts, shell activation scripts and Python files, "
                    "where any other character could be read as code (see %s)" % (name, DOC))
    return None


def check_prefix(prefix, what="env prefix"):
    """`prefix`, unchanged, if prefix_problem finds nothing; envctl's EnvctlError otherwise (host side only)."""
    problem = prefix_problem(prefix)
    if problem:
        from envctl.core.errors import EnvctlError
        from envctl.core.text import printable

        raise EnvctlError("refusing the %s %s: %s." % (what, printable(repr(str(prefix))), problem),
                          hint="Choose a path without these characters; nothing was written.")
    return prefix
