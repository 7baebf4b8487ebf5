"""Test helpers for envctl (not collected by pytest)."""
