"""The machine envctl runs on: its platform, its facts, and which targets it can run."""

from envctl.host.facts import host_facts
from envctl.host.platform import host_platform, virtual_packages
from envctl.host.runnable import GPU_PROVIDERS, Runnability, needs_gpu, runnability

__all__ = ["GPU_PROVIDERS", "Runnability", "host_facts", "host_platform", "needs_gpu", "runnability", "virtual_packages"]
