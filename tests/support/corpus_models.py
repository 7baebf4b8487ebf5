"""The certification corpus: real architectures from `transformers` configs with random
weights (tiny: hidden 32, 2 layers; never from_pretrained) and adversarial models, each a
`corpus_models:<name>` callable for the smoke runner. tests/certify/test_certify_corpus.py
computes every model's ground truth with a bare torch.onnx.export + onnx.checker +
ONNX Runtime on inputs that exercise its behaviour (EXERCISE below).
"""
import torch
from torch import nn

VOCAB, POSITIONS = 100, 64


class _Text(nn.Module):
    """input_ids + attention_mask -> last_hidden_state."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


class _Tensor(nn.Module):
    def __init__(self, model, key):
        super().__init__()
        self.model, self.key = model, key

    def forward(self, x):
        return self.model(**{self.key: x}).last_hidden_state


def _text_case(model):
    torch.manual_seed(0)
    ids = torch.randint(1, VOCAB, (2, 8))
    # what most export scripts pass: a real batch of ids and an all-ones mask
    return {"model": _Text(model).eval(), "inputs": (ids, torch.ones(2, 8, dtype=torch.long)),
            "input_names": ["input_ids", "attention_mask"], "output_names": ["last_hidden_state"],
            "dynamic_axes": {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                             "last_hidden_state": {0: "batch", 1: "seq"}}}


def bert():
    from transformers import BertConfig, BertModel
    torch.manual_seed(0)
    return _text_case(BertModel(BertConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=POSITIONS, attn_implementation="eager"), add_pooling_layer=False))


def gpt2():
    from transformers import GPT2Config, GPT2Model
    torch.manual_seed(0)
    return _text_case(GPT2Model(GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=2,
                                           n_positions=POSITIONS, bos_token_id=0, eos_token_id=0,
                                           attn_implementation="eager")))


def t5_encoder():
    from transformers import T5Config, T5EncoderModel
    torch.manual_seed(0)
    return _text_case(T5EncoderModel(T5Config(vocab_size=VOCAB, d_model=32, d_kv=16, d_ff=64, num_layers=2,
                                              num_heads=2, attn_implementation="eager")))


def vit():
    from transformers import ViTConfig, ViTModel
    torch.manual_seed(0)
    model = ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                               image_size=32, patch_size=8, attn_implementation="eager"), add_pooling_layer=False)
    return {"model": _Tensor(model, "pixel_values").eval(), "inputs": (torch.randn(2, 3, 32, 32),),
            "input_names": ["pixel_values"], "output_names": ["last_hidden_state"]}


def whisper_encoder():
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder
    torch.manual_seed(0)
    config = WhisperConfig(d_model=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64,
                           num_mel_bins=8, max_source_positions=16, attn_implementation="eager")
    # Whisper takes exactly 2 * max_source_positions frames: only the batch is dynamic
    return {"model": _Tensor(WhisperEncoder(config), "input_features").eval(),
            "inputs": (torch.randn(2, 8, 32),), "input_names": ["input_features"],
            "output_names": ["last_hidden_state"]}


class MeanBranch(nn.Module):
    def forward(self, x):
        if x.mean().item() > 0:  # a Python branch on a value: tracing keeps one side
            return x * 2.0
        return x - 1.0


def mean_branch():
    torch.manual_seed(0)
    return MeanBranch(), (torch.randn(2, 8),)


class IdsBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(300, 8)

    def forward(self, ids):
        y = self.emb(ids)
        if (ids > 0).any():  # all-zero example ids take the other side
            return y * 3.0
        return y


def ids_branch():
    torch.manual_seed(0)
    return IdsBranch(), (torch.zeros(2, 5, dtype=torch.long),)


class LogPower(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 4)

    def forward(self, power):
        return self.fc(torch.log(power + 1e-6))


def log_power():
    torch.manual_seed(0)
    return {"model": LogPower(), "inputs": (torch.rand(2, 10, 16),), "input_names": ["power"],
            "dynamic_axes": {"power": {0: "batch", 1: "frames"}}}


class SqrtFront(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(7, 3)

    def forward(self, x):
        return self.fc(torch.sqrt(x))


def sqrt_front():
    torch.manual_seed(0)
    return SqrtFront(), (torch.rand(3, 7),)


class ShapeInt(nn.Module):
    def forward(self, x):
        n = int(x.shape[0])  # a Python int: the trace records the export-time batch
        return x.reshape(n, -1).sum(1, keepdim=True) * torch.ones(n, 2)


def shape_int():
    return ShapeInt(), (torch.randn(2, 3, 4),)


class MaskedMean(nn.Module):
    """Mean over the real tokens: correct for every mask that has one."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(50, 8)

    def forward(self, ids, mask):
        m = mask.unsqueeze(-1).to(torch.float32)
        return (self.emb(ids) * m).sum(1) / m.sum(1)


def masked_mean():
    torch.manual_seed(0)
    return {"model": MaskedMean(), "inputs": (torch.randint(0, 50, (2, 6)), torch.ones(2, 6, dtype=torch.long)),
            "input_names": ["ids", "mask"],
            "dynamic_axes": {"ids": {0: "batch", 1: "seq"}, "mask": {0: "batch", 1: "seq"}}}


class MaskSkip(nn.Module):
    """Skips the mask when it is all ones: a trace from an all-ones mask never masks."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(50, 8)

    def forward(self, ids, mask):
        x = self.emb(ids)
        if bool(mask.all()):
            return x.mean(1)
        m = mask.unsqueeze(-1).to(torch.float32)
        return (x * m).sum(1) / m.sum(1)


def mask_skip():
    torch.manual_seed(0)
    return {"model": MaskSkip(), "inputs": (torch.randint(0, 50, (2, 6)), torch.ones(2, 6, dtype=torch.long)),
            "input_names": ["ids", "mask"],
            "dynamic_axes": {"ids": {0: "batch", 1: "seq"}, "mask": {0: "batch", 1: "seq"}}}


def _padded(batch, seq, left=False):
    mask = torch.ones(batch, seq, dtype=torch.long)
    for r in range(1, batch):
        real = max(1, seq - r)
        if left:
            mask[r, :seq - real] = 0
        else:
            mask[r, real:] = 0
    return mask


def _text(batch, seq, left=False):
    g = torch.Generator().manual_seed(batch * 100 + seq)
    return (torch.randint(1, VOCAB, (batch, seq), generator=g), _padded(batch, seq, left))


# Inputs that exercise each model's behaviour, for the ground truth: what real use feeds it.
EXERCISE = {
    "bert": [_text(2, 8), _text(3, 5), _text(3, 20, left=True), _text(1, 40)],
    "gpt2": [_text(2, 8), _text(3, 5), _text(3, 20, left=True), _text(1, 40)],
    "t5_encoder": [_text(2, 8), _text(3, 5), _text(3, 20, left=True), _text(1, 40)],
    "vit": [(torch.randn(1, 3, 32, 32),), (torch.randn(4, 3, 32, 32),)],
    "whisper_encoder": [(torch.randn(1, 8, 32),), (torch.randn(3, 8, 32),)],
    "mean_branch": [(torch.randn(2, 8) + 1.0,), (torch.randn(2, 8) - 1.0,)],
    "ids_branch": [(torch.zeros(2, 5, dtype=torch.long),), (torch.randint(1, 300, (3, 5)),)],
    "log_power": [(torch.rand(1, 10, 16),), (torch.rand(3, 30, 16),)],
    "sqrt_front": [(torch.rand(1, 7),), (torch.rand(5, 7) * 10,)],
    "shape_int": [(torch.randn(1, 3, 4),), (torch.randn(3, 3, 4),)],
    "masked_mean": [(torch.randint(0, 50, (3, 6)), _padded(3, 6)), (torch.randint(0, 50, (2, 12)), _padded(2, 12, True))],
    "mask_skip": [(torch.randint(0, 50, (3, 6)), _padded(3, 6)), (torch.randint(0, 50, (2, 12)), _padded(2, 12, True))],
}
