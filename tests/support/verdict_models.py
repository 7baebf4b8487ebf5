"""Models whose verdict needs proof (issue 18): decoders read through a padding mask,
float32's own error, a random op after eval(), frozen loops and lists, and a genuinely
wrong export. Real architectures come from `transformers` configs with random weights
(tiny; never from_pretrained); the traps are hand-written. Each is a
`verdict_models:<name>` callable for envctl export / certify.
"""
import torch
import torch.nn.functional as F
from torch import nn

VOCAB = 100


class _Decoder(nn.Module):
    """input_ids + attention_mask -> last_hidden_state (batch, seq, hidden)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def _text_case(model, seq=8):
    torch.manual_seed(0)
    ids = torch.randint(1, VOCAB, (2, seq))
    mask = torch.ones(2, seq, dtype=torch.long)  # what most export scripts pass: no padding
    return {"model": _Decoder(model).eval(), "inputs": (ids, mask),
            "input_names": ["input_ids", "attention_mask"], "output_names": ["last_hidden_state"],
            "dynamic_axes": {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                             "last_hidden_state": {0: "batch", 1: "seq"}}}


def llama():
    from transformers import LlamaConfig, LlamaModel
    torch.manual_seed(0)
    return _text_case(LlamaModel(LlamaConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2, intermediate_size=64,
        vocab_size=VOCAB, max_position_embeddings=64)))


def mistral():
    from transformers import MistralConfig, MistralModel
    torch.manual_seed(0)
    return _text_case(MistralModel(MistralConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2, intermediate_size=64,
        vocab_size=VOCAB, max_position_embeddings=64, sliding_window=4)))


def clip_text():
    from transformers import CLIPTextConfig, CLIPTextModel
    torch.manual_seed(0)
    return _text_case(CLIPTextModel(CLIPTextConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64, vocab_size=VOCAB,
        max_position_embeddings=64)))


class NaiveVariance(nn.Module):
    """Variance as E[x^2] - E[x]^2: catastrophic cancellation on readings near 1000."""

    def forward(self, x):
        return (x * x).mean(-1, keepdim=True) - x.mean(-1, keepdim=True) ** 2


def naive_variance():
    torch.manual_seed(0)
    return {"model": NaiveVariance(), "inputs": (1000.0 + torch.rand(4, 64),), "input_names": ["readings"],
            "ranges": {"readings": [999.0, 1001.0]}}


class EvalDropout(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 16)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        return self.head(F.dropout(torch.relu(self.fc(x)), 0.1))  # no training=self.training: on after eval()


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Linear(8, 16)
        self.block = EvalDropout()

    def forward(self, x):
        return self.block(self.stem(x))


def eval_dropout():
    torch.manual_seed(0)
    return Classifier(), (torch.randn(2, 8),)


class UnrolledLoop(nn.Module):
    """A recurrent cell unrolled by a Python loop over the sequence length."""

    def __init__(self):
        super().__init__()
        self.cell = nn.Linear(8, 8)

    def forward(self, x):
        h = torch.zeros_like(x[:, 0])
        for t in range(int(x.shape[1])):  # the trace unrolls exactly the export length
            h = torch.tanh(self.cell(x[:, t]) + h)
        return h


def unrolled_loop():
    torch.manual_seed(0)
    return {"model": UnrolledLoop(), "inputs": (torch.randn(2, 6, 8),), "input_names": ["x"],
            "dynamic_axes": {"x": {0: "batch", 1: "steps"}}}


class PlainLoop(UnrolledLoop):
    """The same loop over range(x.shape[1]): the tracer records it without a warning."""

    def forward(self, x):
        h = torch.zeros_like(x[:, 0])
        for t in range(x.shape[1]):
            h = torch.tanh(self.cell(x[:, t]) + h)
        return h


def plain_loop():
    case = unrolled_loop()
    case["model"] = PlainLoop()
    return case


class LengthsList(nn.Module):
    """Per-row sums up to each row's length, read into a Python list."""

    def forward(self, x, lengths):
        rows = [x[i, :n].sum(0) for i, n in enumerate(lengths.tolist())]  # values frozen by the trace
        return torch.stack(rows)


def lengths_list():
    torch.manual_seed(0)
    return {"model": LengthsList(), "inputs": (torch.randn(2, 6, 4), torch.tensor([6, 3])),
            "input_names": ["x", "lengths"], "dynamic_axes": {"x": {0: "batch"}, "lengths": {0: "batch"}}}


class _WrongSymbolic(torch.autograd.Function):
    """tanh in PyTorch, but a hand-written symbolic that emits Sigmoid: a real export bug."""

    @staticmethod
    def forward(ctx, x):
        return torch.tanh(x)

    @staticmethod
    def symbolic(g, x):
        return g.op("Sigmoid", x)


class WrongSymbolic(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x):
        return _WrongSymbolic.apply(self.fc(x))


def wrong_symbolic():
    torch.manual_seed(0)
    return WrongSymbolic(), (torch.randn(2, 8),)
