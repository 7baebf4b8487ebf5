"""The orchestrator: the stages in order, for one target or many (see stages.py)."""
