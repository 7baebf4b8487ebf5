"""Source of a 'team models' module that tests write into a project.

Each callable is a classic way a real model breaks the export path; tests
name them as `<module>:<callable>` in a matrix or a smoke spec.
"""

SOURCE = '''
import time

import torch
from torch import nn


def broken():
    raise RuntimeError("checkpoint /nowhere/model.pt not found")


class BatchBranch(nn.Module):
    def forward(self, x):
        if x.shape[0] > 1:  # tracing keeps the branch taken at export (batch 2)
            return x * 2.0
        return x - 1.0


def branchy():
    return BatchBranch(), (torch.zeros(2, 4),)


class FrozenBatch(nn.Module):
    def forward(self, x):
        n = int(x.shape[0])  # a Python int: the trace records the export-time batch
        return x.new_ones(n, 3) * x.sum()


def frozen():
    return {"model": FrozenBatch(), "inputs": (torch.zeros(2, 4),), "input_names": ["x"],
            "output_names": ["y"]}


def hangs():
    time.sleep(3600)
'''
