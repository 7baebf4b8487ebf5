"""Models whose domain is narrower than "any size, any value", for the domain and branch tests
(tests/smoke/test_verdict_domain.py): real architectures from `transformers` configs with random
weights (tiny; never from_pretrained) with a minimum input size, and hand-written traps
whose Python branch depends on the input's values. Each is a `domain_models:<name>` callable.
"""
import torch
from torch import nn


class _Hidden(nn.Module):
    def __init__(self, model, key):
        super().__init__()
        self.model, self.key = model, key

    def forward(self, x):
        return self.model(**{self.key: x}).last_hidden_state


def convnext():
    """ConvNeXt with 4 stages: stride 32 in all, so height and width must be at least 32."""
    from transformers import ConvNextConfig, ConvNextModel
    torch.manual_seed(0)
    model = ConvNextModel(ConvNextConfig(num_channels=3, hidden_sizes=[8, 8, 16, 16], depths=[1, 1, 1, 1],
                                         image_size=64))
    return {"model": _Hidden(model, "pixel_values").eval(), "inputs": (torch.rand(1, 3, 64, 64),),
            "input_names": ["pixel_values"], "output_names": ["last_hidden_state"],
            "dynamic_axes": {"pixel_values": {0: "batch", 2: "height", 3: "width"},
                             "last_hidden_state": {0: "batch", 2: "height_out", 3: "width_out"}}}


def hubert():
    """HuBERT's conv feature extractor (kernels 10,3,3,3,3,2,2, strides 5,2,...): 400 samples at least."""
    from transformers import HubertConfig, HubertModel
    torch.manual_seed(0)
    config = HubertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                          conv_dim=(8, 8, 8, 8, 8, 8, 8), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                          attn_implementation="eager")
    return {"model": _Hidden(HubertModel(config), "input_values").eval(), "inputs": (torch.randn(1, 1600),),
            "input_names": ["input_values"], "output_names": ["last_hidden_state"],
            "dynamic_axes": {"input_values": {0: "batch", 1: "samples"},
                             "last_hidden_state": {0: "batch", 1: "frames"}}}


class ScaleIfBytes(nn.Module):
    """Takes 0..1 or 0..255 images: the trace from a 0..1 example never divides."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        if x.max() > 1:
            x = x / 255
        return self.conv(x)


def scale_if_bytes():
    torch.manual_seed(0)
    return {"model": ScaleIfBytes().eval(), "inputs": (torch.rand(1, 3, 8, 8),), "input_names": ["image"]}


class AlwaysTrue(nn.Module):
    """A value branch that no input can flip: the traced branch is right everywhere."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        if bool((x.abs() >= 0).all()):
            x = x * 0.5
        return self.conv(x)


def always_true():
    torch.manual_seed(0)
    return {"model": AlwaysTrue().eval(), "inputs": (torch.rand(1, 3, 8, 8),), "input_names": ["image"]}


def swin():
    """Swin changes itself in forward: a layer shown an input smaller than its window shrinks
    the window to it and keeps it (`set_shift_and_window_size`), so the model fails on sizes
    it accepted before. Probing the domain at size 1 must leave the model as it was."""
    from transformers import SwinConfig, SwinModel
    torch.manual_seed(0)
    model = SwinModel(SwinConfig(image_size=32, patch_size=4, embed_dim=8, depths=[1, 1], num_heads=[1, 1],
                                 window_size=4))
    return {"model": _Hidden(model, "pixel_values").eval(), "inputs": (torch.rand(1, 3, 32, 32),),
            "input_names": ["pixel_values"], "output_names": ["last_hidden_state"],
            "dynamic_axes": {"pixel_values": {0: "batch", 2: "height", 3: "width"},
                             "last_hidden_state": {0: "batch", 1: "tokens"}}}


class _Inputs(nn.Module):
    """A wrapper whose forward takes `*inputs`, as many export scripts write one."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, *inputs):
        return self.model(pixel_values=inputs[0]).pooler_output


def resnet_varargs():
    """A ResNet behind `forward(self, *inputs)`: torch.export binds all inputs to one parameter."""
    from transformers import ResNetConfig, ResNetModel
    torch.manual_seed(0)
    model = ResNetModel(ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1]))
    return {"model": _Inputs(model).eval(), "inputs": (torch.rand(1, 3, 32, 32),), "input_names": ["pixel_values"],
            "dynamic_axes": {"pixel_values": {0: "batch", 2: "height", 3: "width"}}}
