"""Pack a target's lock into one file for a machine that cannot run envctl or reach the internet.

Modules: sources (the locked archives, hash-checked, from caches or their URLs),
materialise (a relocatable prefix built for the target platform at a placeholder
path), bundle (the self-extracting sh file), oci (an OCI image archive),
importcert (filing a device certificate). installer.py and devcert.py are
stdlib-only scripts shipped inside bundles and run with the env's own python.
"""

from pathlib import Path

PACK_DIR = Path(__file__).resolve().parent
INSTALLER_PATH = PACK_DIR / "installer.py"
DEVCERT_PATH = PACK_DIR / "devcert.py"
HEADER_PATH = PACK_DIR / "header.sh"
PREFIXRULE_PATH = PACK_DIR.parent / "core" / "prefixrule.py"  # stdlib-only: shipped beside installer.py
PROCESS_PATH = PACK_DIR.parent / "core" / "process.py"  # stdlib-only on import: shipped beside devcert.py

__all__ = ["PACK_DIR", "INSTALLER_PATH", "DEVCERT_PATH", "HEADER_PATH", "PREFIXRULE_PATH", "PROCESS_PATH"]
