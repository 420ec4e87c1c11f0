"""A control's UNet LoRAs (FaceID's) beside LoRAs already loaded (a prompt's `<lora:...>` tags): both act
while the control runs, each at its own scale, and afterwards the model is as before (oracle: diffusers'
`set_adapters` with both adapters and their weights, on a copy of the same tiny UNet)."""

from __future__ import annotations

import pytest
import torch

from pipelines.control_loras import UnetLora, applied_unet_loras
from pipelines.tiny_models import tiny_sd15_pipeline


def lora(unet, seed: int, suffixes=("attn1.to_q", "attn2.to_v", "attn2.to_out.0")) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, module in unet.named_modules():
        if name.endswith(suffixes):
            state[f"unet.{name}.lora_A.weight"] = torch.randn(4, module.in_features, generator=g) * 0.3
            state[f"unet.{name}.lora_B.weight"] = torch.randn(module.out_features, 4, generator=g) * 0.3
    return state


class Carrier:
    def __init__(self, *loras: UnetLora) -> None:
        self.unet_loras = loras


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(0)
    return torch.randn(1, 4, 32, 32, generator=g), torch.tensor(500), torch.randn(1, 77, 32, generator=g)


def out(unet, inputs) -> torch.Tensor:
    with torch.no_grad():
        return unet(*inputs).sample


def test_control_loras_join_the_active_ones_and_leave(inputs):
    ours, oracle = tiny_sd15_pipeline(), tiny_sd15_pipeline()
    prompt_lora, face_lora = lora(ours.unet, 1), lora(ours.unet, 2, ("attn1.to_k", "attn2.to_q", "attn1.to_out.0"))
    base = out(ours.unet, inputs)
    ours.load_lora_weights(prompt_lora, adapter_name="prompt")
    ours.set_adapters(["prompt"], [0.6])
    before = out(ours.unet, inputs)
    with applied_unet_loras(ours.unet, [Carrier(UnetLora("face", face_lora)), Carrier(UnetLora("face", face_lora))]):
        both = out(ours.unet, inputs)
    torch.testing.assert_close(out(ours.unet, inputs), before, atol=0, rtol=0)
    assert ours.unet.active_adapters() == ["prompt"]

    oracle.load_lora_weights(prompt_lora, adapter_name="prompt")
    oracle.load_lora_weights(face_lora, adapter_name="face")
    oracle.set_adapters(["prompt", "face"], [0.6, 1.0])
    torch.testing.assert_close(both, out(oracle.unet, inputs), atol=1e-6, rtol=0)
    assert (both - before).abs().max() > 1e-3 and (before - base).abs().max() > 1e-3


def test_a_control_lora_alone_leaves_the_model_its_own(inputs):
    pipe = tiny_sd15_pipeline()
    base = out(pipe.unet, inputs)
    with (
        pytest.raises(RuntimeError, match="boom"),
        applied_unet_loras(pipe.unet, [Carrier(UnetLora("f", lora(pipe.unet, 3)))]),
    ):
        assert (out(pipe.unet, inputs) - base).abs().max() > 1e-3
        raise RuntimeError("boom")
    torch.testing.assert_close(out(pipe.unet, inputs), base, atol=0, rtol=0)
    assert not getattr(pipe.unet, "peft_config", None)
