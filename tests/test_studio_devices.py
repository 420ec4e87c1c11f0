"""Device, dtype and memory policy (studio/devices.py)."""

from __future__ import annotations

import pytest
import torch

from studio.devices import DevicePolicy, choose_device_policy, place_pipeline
from studio.errors import DeviceError


def test_auto_picks_what_this_machine_has():
    policy = choose_device_policy()
    if torch.cuda.is_available():
        assert policy.device == "cuda" and policy.dtype == torch.float16
    else:
        assert policy.device == "cpu" and policy.dtype == torch.float32


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"device": "cpu", "precision": "fp16"}, "fp16 on CPU"),
        ({"device": "cpu", "precision": "bf16"}, "bf16 on CPU"),
        ({"device": "cpu", "memory": "cpu-offload"}, "CUDA"),
        ({"memory": "lots"}, "memory preset"),
        ({"precision": "fp8"}, "precision"),
        ({"device": "tpu"}, "device"),
    ],
)
def test_impossible_choices_are_refused(kwargs, fragment):
    with pytest.raises(DeviceError, match=fragment):
        choose_device_policy(**kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_without_cuda_is_refused():
    with pytest.raises(DeviceError, match="CUDA is not available"):
        choose_device_policy("cuda")


@pytest.mark.parametrize("memory, flag", [("vae-slicing", "use_slicing"), ("vae-tiling", "use_tiling")])
def test_vae_presets_switch_the_vae(memory, flag):
    from pipelines.tiny_models import tiny_sd15_pipeline

    pipe = tiny_sd15_pipeline()
    assert getattr(pipe.vae, flag) is False
    place_pipeline(pipe, DevicePolicy(memory=memory))
    assert getattr(pipe.vae, flag) is True


@pytest.mark.gpu
def test_cuda_half_precision_and_offload():
    from pipelines.tiny_models import tiny_sd15_pipeline

    policy = choose_device_policy("cuda", memory="cpu-offload")
    assert policy.dtype == torch.float16
    pipe = place_pipeline(tiny_sd15_pipeline().to(dtype=policy.dtype), policy)
    assert pipe._execution_device.type == "cuda"


def test_compile_is_off_by_default_and_compiles_the_unet_in_place():
    from pipelines.tiny_models import tiny_sd15_pipeline

    assert not choose_device_policy("cpu").compile
    pipe = tiny_sd15_pipeline()
    names = [name for name, _ in pipe.unet.named_modules()]
    unet = pipe.unet
    place_pipeline(pipe, choose_device_policy("cpu", compile=True))
    assert pipe.unet is unet and unet._compiled_call_impl is not None  # nn.Module.compile: same object
    assert [name for name, _ in unet.named_modules()] == names  # attention sites keep their names


def test_every_task_command_has_a_compile_flag():
    import inspect

    from studio.registry import default_registry
    from studio.task_commands import task_command

    registry = default_registry()
    for task in registry.tasks.values():
        params = inspect.signature(task_command(task, registry)).parameters
        assert params["compile"].default is False, task.name
