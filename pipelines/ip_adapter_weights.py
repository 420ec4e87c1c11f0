"""IP-Adapter weight files in the official layout, read without diffusers' processor swap.

Why not `pipe.load_ip_adapter`: it rebuilds every attention processor of the UNet (`attn1` as
`cls()`, `attn2` as `IPAdapterAttnProcessor2_0`), so no other method can run in the same call. Here the
file is only read: the image projection is built with diffusers' own classes and converter (the
`UNet2DConditionModel._convert_ip_adapter_image_proj_to_diffusers` it calls, which touches nothing on the
UNet), and each `ip_adapter.{id}.to_k_ip/to_v_ip` pair is mapped to the name of the cross-attention module
it belongs to, numbered exactly as diffusers numbers them. The control in `attention_processors/ip_adapter.py`
then adds the image branch inside the studio's own processor.

Layout (tencent-ailab/IP-Adapter, flattened in `.safetensors`): `image_proj.*` (the projection's state
dict) and `ip_adapter.{i}.to_k_ip.weight` / `.to_v_ip.weight`, where `i` is the processor's index in
`unet.attn_processors` order; self-attention processors sit at the even indices and carry nothing.
FaceID files add `ip_adapter.{i}.to_{q,k,v,out}_lora.{down,up}.weight` for every processor i (0..N-1), kept
here as `AdapterWeights.lora` and loaded through peft by `pipelines/ip_adapter_faceid.py`.

This module takes a path the caller already judged (the studio sniffs pickle first); it only ever opens
safetensors.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from diffusers import UNet2DConditionModel
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

Kind = Literal["base", "plus", "full", "faceid", "faceid_plus"]
FACE_KINDS = ("faceid", "faceid_plus")  # projections that take an insightface ArcFace embedding
LORA_PARTS = ("to_q_lora", "to_k_lora", "to_v_lora", "to_out_lora")  # FaceID files' LoRA, per processor


@dataclass(frozen=True)
class AdapterWeights:
    """One IP-Adapter file, split into its projection and its per-layer image keys/values."""

    name: str  # the file name, for messages
    kind: Kind
    image_proj: dict[str, Tensor]  # keys without the `image_proj.` prefix, official names
    layers: dict[int, tuple[Tensor, Tensor]]  # official id -> (to_k_ip [inner, C], to_v_ip [inner, C])
    # FaceID files only: processor index (0..N-1, all processors) -> {"to_q_lora.down": [r, in], ...}
    lora: dict[int, dict[str, Tensor]] = field(default_factory=dict)

    @property
    def is_face(self) -> bool:
        """FaceID and FaceID-Plus take a face (an ArcFace embedding), not a CLIP image embedding."""
        return self.kind in FACE_KINDS

    @property
    def cross_attention_dim(self) -> int:
        """The text width the adapter was trained for (C of every to_k_ip weight)."""
        return int(next(iter(self.layers.values()))[0].shape[1])

    @property
    def uses_hidden_states(self) -> bool:
        """Plus, Full-face and FaceID-Plus read the vision tower's penultimate hidden states; base reads its
        image embeds (and FaceID reads no image encoder at all)."""
        return self.kind not in ("base", "faceid")

    @property
    def image_embed_dim(self) -> int:
        """Width of what the projection expects from the image encoder."""
        if self.kind == "base":
            return int(self.image_proj["proj.weight"].shape[1])
        if self.kind == "full":
            return int(self.image_proj["proj.0.weight"].shape[0])
        if self.kind == "faceid_plus":
            return int(self.image_proj["perceiver_resampler.proj_in.weight"].shape[1])
        if self.kind == "faceid":
            raise ValueError(f"IP-Adapter {self.name} is a FaceID adapter: it reads no image encoder")
        return int(self.image_proj["proj_in.weight"].shape[1])

    @property
    def id_embed_dim(self) -> int:
        """FaceID kinds: the width of the face-recognition embedding their projection takes (ArcFace: 512)."""
        return int(self.image_proj["proj.0.weight"].shape[1])


def kind_of(image_proj: dict[str, Tensor]) -> Kind:
    """Detect the adapter form from its projection's keys, in diffusers' order of tests."""
    if "proj.weight" in image_proj:
        return "base"
    if "proj.3.weight" in image_proj:
        return "full"
    if "perceiver_resampler.proj_in.weight" in image_proj:
        return "faceid_plus"
    if "norm.weight" in image_proj:
        return "faceid"
    if {"latents", "proj_in.weight", "proj_out.weight"} <= image_proj.keys():
        return "plus"
    raise ValueError(
        "the image_proj.* keys match no known IP-Adapter projection (base: proj.weight; Plus: latents, "
        "proj_in.weight; Full-face: proj.3.weight; FaceID: norm.weight; FaceID-Plus: perceiver_resampler.*)"
    )


def load_adapter(path: str | os.PathLike[str]) -> AdapterWeights:
    """Read an official-layout `.safetensors` IP-Adapter; a ValueError names what is wrong with it."""
    path = Path(path)
    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise ValueError(f"cannot read IP-Adapter {path.name} as safetensors ({error})") from None
    return adapter_from_state(path.name, tensors)


def adapter_from_state(name: str, tensors: dict[str, Tensor]) -> AdapterWeights:
    """Split a flattened official state dict (`image_proj.*`, `ip_adapter.{id}.to_k_ip/to_v_ip.weight`)."""
    image_proj = {k.removeprefix("image_proj."): v for k, v in tensors.items() if k.startswith("image_proj.")}
    layers: dict[int, dict[str, Tensor]] = {}
    lora: dict[int, dict[str, Tensor]] = {}
    for key, value in tensors.items():
        if not key.startswith("ip_adapter."):
            continue
        parts = key.split(".")  # ip_adapter, id, to_k_ip|to_v_ip, weight (or id, to_q_lora, down|up, weight)
        if not parts[1].isdigit() or parts[-1] != "weight":
            continue
        if len(parts) == 4 and parts[2] in ("to_k_ip", "to_v_ip"):
            layers.setdefault(int(parts[1]), {})[parts[2]] = value
        elif len(parts) == 5 and parts[2] in LORA_PARTS and parts[3] in ("down", "up"):
            lora.setdefault(int(parts[1]), {})[f"{parts[2]}.{parts[3]}"] = value
    if not image_proj or not layers:
        absent = [p for p, found in (("image_proj.*", image_proj), ("ip_adapter.{id}.to_k_ip", layers)) if not found]
        raise ValueError(f"{name} is not an IP-Adapter file: it has no {' and no '.join(absent)} keys")
    incomplete = sorted(i for i, pair in layers.items() if set(pair) != {"to_k_ip", "to_v_ip"})
    if incomplete:
        raise ValueError(f"{name}: ip_adapter layer(s) {incomplete} lack to_k_ip or to_v_ip")
    kind = kind_of(image_proj)
    pairs = {i: (pair["to_k_ip"], pair["to_v_ip"]) for i, pair in sorted(layers.items())}
    if lora and kind not in FACE_KINDS:
        raise ValueError(f"{name}: LoRA keys (ip_adapter.{{id}}.to_q_lora...) belong to FaceID files only")
    whole = {f"{p}.{d}" for p in LORA_PARTS for d in ("down", "up")}
    broken = sorted(i for i, parts in lora.items() if set(parts) != whole)
    if broken:
        raise ValueError(f"{name}: LoRA of processor(s) {broken[:5]} lacks some of {sorted(whole)}")
    return AdapterWeights(name, kind, image_proj, pairs, dict(sorted(lora.items())))


def cross_attention_ids(unet: nn.Module) -> dict[str, int]:
    """Module name of every cross-attention -> its id in the file, numbered as diffusers numbers them.

    diffusers walks `unet.attn_processors` (registration order: down, up, mid; not execution order) and gives
    the k-th non-`attn1` processor the id 2k + 1.
    """
    ids: dict[str, int] = {}
    key_id = 1
    for name in unet.attn_processors:
        if name.endswith("attn1.processor") or "motion_modules" in name:
            continue
        ids[name.removesuffix(".processor")] = key_id
        key_id += 2
    return ids


def site_weights(weights: AdapterWeights, unet: nn.Module) -> dict[str, tuple[Tensor, Tensor]]:
    """Cross-attention module name -> (to_k_ip, to_v_ip) weights, checked against this UNet."""
    cross_dim = int(unet.config.cross_attention_dim)
    if weights.cross_attention_dim != cross_dim:
        raise ValueError(
            f"IP-Adapter {weights.name} was made for text width (cross_attention_dim) {weights.cross_attention_dim}, "
            f"but this model's UNet has {cross_dim}: use the adapter trained for this base model"
        )
    ids = cross_attention_ids(unet)
    if sorted(ids.values()) != sorted(weights.layers):
        raise ValueError(
            f"IP-Adapter {weights.name} has image keys for {len(weights.layers)} cross-attention layers, "
            f"but this model's UNet has {len(ids)}: use the adapter trained for this base model"
        )
    modules = dict(unet.named_modules())
    out: dict[str, tuple[Tensor, Tensor]] = {}
    for name, key_id in ids.items():
        to_k, to_v = weights.layers[key_id]
        inner = modules[name].to_k.out_features
        if to_k.shape != (inner, cross_dim) or to_v.shape != (inner, cross_dim):
            raise ValueError(
                f"IP-Adapter {weights.name}: layer {key_id} has shape {tuple(to_k.shape)}, but {name} needs "
                f"{(inner, cross_dim)}: use the adapter trained for this base model"
            )
        out[name] = (to_k, to_v)
    return out


def build_projection(weights: AdapterWeights, unet: UNet2DConditionModel) -> nn.Module:
    """diffusers' projection module (`ImageProjection`, `IPAdapterPlusImageProjection`, ...) with the file's weights.

    diffusers' converter is a UNet method but reads nothing of the UNet with `low_cpu_mem_usage=False`.
    """
    try:
        projection = UNet2DConditionModel._convert_ip_adapter_image_proj_to_diffusers(
            unet, dict(weights.image_proj), low_cpu_mem_usage=False
        )
    except (KeyError, RuntimeError) as error:
        message = str(error).splitlines()[0]
        raise ValueError(
            f"IP-Adapter {weights.name}: its image_proj weights do not fit their own layout ({message})"
        ) from None
    return projection.to(device=unet.device, dtype=unet.dtype).eval()
