"""The create stage: build an env exactly from its lock, verified, swapped in atomically."""

from envctl.create.build import CreateResult, create_env, env_state

__all__ = ["CreateResult", "create_env", "env_state"]
