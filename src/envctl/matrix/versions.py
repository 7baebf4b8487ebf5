"""Version specs as written in the matrix, and their conda and pip spellings.

The matrix takes one spelling for every package, whichever manager installs
it:

* ``"*"`` (or empty): any version;
* a bare version ``"3.11"`` or ``"2.13.0"``: that release and its patch
  releases (conda's ``=3.11``, pip's ``==3.11.*``);
* a PEP 440 specifier set: ``">=1.16,<1.18"``, ``"==1.17.*"``, ``"~=1.17.0"``.

Local labels (``+cpu``, ``+cu118``) follow PEP 440: a spec without one
admits every build of the version (a torch wheel ``2.13.0+cpu`` satisfies
``"2.13.0"``); a spec with one names that build only (``"2.13.0+cu118"`` is
not satisfied by ``2.13.0+cpu``: it is not the build the matrix asked for).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

_BARE = re.compile(r"^\d+(\.\d+)*([a-z]+\d*)?(\+[\w.]+)?\Z", re.IGNORECASE)
_WILDCARD = re.compile(r"^\d+(\.\d+)*\.\*\Z")


class SpecError(ValueError):
    """A version spec that cannot be parsed; the message says why."""


@dataclass(frozen=True)
class Spec:
    """A parsed version spec; `raw` keeps what the user wrote."""

    raw: str

    @classmethod
    def parse(cls, raw: object) -> "Spec":
        from envctl.core.limits import control_char, short

        if isinstance(raw, bool) or raw is None or not isinstance(raw, (str, int, float)):
            raise SpecError(f"expected a version spec string, got {short(raw)}")
        if isinstance(raw, (int, float)):
            # YAML reads 3.11 as a float and 3.10 as 3.1: refuse rather than guess.
            raise SpecError(
                f"version {raw!r} is a YAML number; quote it (\"{raw}\") so 3.10 stays 3.10"
            )
        text = str(raw).strip()
        if control_char(text) or len(text) > 200:
            raise SpecError(f"{short(text)} is not a version spec (control characters or too long)")
        spec = cls(text)
        _ = spec._specifier  # validate now, not at first use
        return spec

    @property
    def is_any(self) -> bool:
        return self.raw in ("", "*")

    @cached_property
    def _specifier(self) -> SpecifierSet:
        text = self.raw
        if self.is_any:
            return SpecifierSet()
        if "|" in text:
            raise SpecError(f"'{text}': alternatives with '|' are not supported; use a PEP 440 range")
        if _BARE.match(text):
            try:
                version = Version(text)
            except InvalidVersion as exc:
                raise SpecError(f"'{text}' is not a valid version") from exc
            # A pre-release, post-release or local version names one release: PEP 440 has no
            # prefix match ("==2.4rc1.*") for those.
            exact = "+" in text or version.is_prerelease or version.is_postrelease
            return SpecifierSet(f"=={text}" if exact else f"=={text}.*")
        if _WILDCARD.match(text):
            return SpecifierSet(f"=={text}")
        try:
            specifier = SpecifierSet(text)
        except InvalidSpecifier as exc:
            raise SpecError(
                f"'{text}' is not a version spec (write \"*\", \"2.4\", \">=1.16,<1.18\" or \"==1.17.*\")"
            ) from exc
        for single in specifier:
            if single.operator == "===":
                # Arbitrary equality matches a string, not a version: no conda spelling, no ordering.
                raise SpecError(f"'{text}': '===' (arbitrary string equality) is not supported; use '=='")
        return specifier

    def contains(self, version: str | Version) -> bool:
        v = version if isinstance(version, Version) else Version(str(version))
        if "+" not in self.raw:
            v = Version(v.public)
        return self._specifier.contains(v, prereleases=True)

    @property
    def exact(self) -> Version | None:
        """The one version this spec names (``==X.Y.Z`` or a full bare X.Y.Z)."""
        specs = list(self._specifier)
        if len(specs) == 1 and specs[0].operator in ("==", "===") and "*" not in specs[0].version:
            return Version(specs[0].version)
        if _BARE.match(self.raw) and len(Version(self.raw).release) >= 3:
            return Version(self.raw)
        return None

    def pip(self) -> str:
        """The requirement suffix for pip: '' (any), '==2.13.0', '>=1.16,<1.18'."""
        if self.is_any:
            return ""
        if _BARE.match(self.raw) and len(Version(self.raw).release) >= 3:
            return f"=={self.raw}"
        return ",".join(sorted(str(s) for s in self._specifier))

    def conda(self) -> str:
        """The version part of a conda match spec: '', '2.13.0.*', '>=1.16,<1.18'."""
        if self.is_any:
            return ""
        parts = []
        for s in sorted(self._specifier, key=str):
            if s.operator == "==" and s.version.endswith(".*"):
                parts.append(s.version)
            elif s.operator == "===":
                parts.append(f"=={s.version}")
            else:
                parts.append(f"{s.operator}{s.version}")
        return ",".join(parts)

    def __str__(self) -> str:
        return self.raw or "*"


ANY = Spec("*")
