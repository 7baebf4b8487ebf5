"""The compatibility rules: the engine, the rule set, and the facts they cite (docs/compatibility.md)."""
