"""Face prompts: IP-Adapter-FaceID and FaceID-Plus / PlusV2 (Ye et al., tencent-ailab/IP-Adapter) as a control.

FaceID conditions on a face-recognition embedding instead of a CLIP image embedding: insightface finds the
one face of the image, aligns it at its 5 landmarks and embeds it with ArcFace (L2-normalised, 512-d). The
file's projection (diffusers' `IPAdapterFaceIDImageProjection`) turns the embedding into 4 tokens that take
the decoupled cross-attention branch like any image prompt; the unconditional rows get the projection of a
zero embedding, as in diffusers' FaceID recipe. FaceID-Plus (`IPAdapterFaceIDPlusImageProjection`) also reads
the aligned face's CLIP hidden states (the model's image encoder; an all-zero image for the unconditional
rows); PlusV2 adds its ID tokens back to the output ("shortcut"), Plus does not.

The aligned face goes to the CLIP image processor as insightface returns it (BGR), as the official demo and
diffusers' FaceID recipe feed it. FaceID files also carry LoRA weights for every attention processor; they
are converted to diffusers' LoRA layout and loaded through peft while the control runs (see
`pipelines/control_loras.py`), as diffusers' `load_ip_adapter` does, without its processor swap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import PIL.Image
import torch
from torch import Tensor, nn

from attention_processors.ip_adapter import ImageBranch, IPAdapter
from pipelines.backbone import Backbone
from pipelines.control_loras import UnetLora
from pipelines.face_settings import FACE_ID
from pipelines.faces import Face, analyse_face
from pipelines.ip_adapter_images import image_encoder_of
from pipelines.ip_adapter_scales import BlockScales, site_scales
from pipelines.ip_adapter_weights import AdapterWeights, build_projection, site_weights


@dataclass(frozen=True)
class FacePrompt:
    """One face prompt: an image with one face, the FaceID adapter it goes through, its strength and region.

    `faces` is insightface's `FaceAnalysis` (`pipelines.faces.load_face_models(folder)`); it may be None when
    `face` gives the face already analysed (`pipelines.faces.analyse_face`).
    """

    image: PIL.Image.Image | None
    adapter: AdapterWeights
    faces: Any = None
    scale: float | BlockScales = FACE_ID.scale
    mask: Tensor | None = None  # [H, W] in [0, 1]; None: everywhere
    # FaceID-Plus only: add the ID tokens back to the resampler's output (PlusV2). None: True when the file's
    # name says "plusv2" (the official file names), else False.
    shortcut: bool | None = None
    face: Face | None = None
    name: str = "the face image"  # how errors name the image

    def __post_init__(self) -> None:
        if not self.adapter.is_face:
            raise ValueError(f"{self.adapter.name} is not a FaceID adapter: give it as an image prompt (ImagePrompt)")
        if self.face is None and (self.image is None or self.faces is None):
            raise ValueError("a face prompt needs the image and the face models (or an analysed face)")

    @property
    def uses_shortcut(self) -> bool:
        if self.shortcut is not None:
            return self.shortcut
        return "plusv2" in self.adapter.name.lower().replace("-", "").replace("_", "")


@dataclass
class FaceIDAdapter(IPAdapter):
    """The image-prompt control with the LoRAs its FaceID files carry (loaded while it runs)."""

    unet_loras: Sequence[UnetLora] = field(default_factory=tuple)


def lora_state(adapter: AdapterWeights, unet: nn.Module) -> dict[str, Tensor]:
    """The file's `ip_adapter.{i}.to_q_lora.down.weight`... as diffusers' LoRA layout for this UNet.

    `i` numbers every processor of `unet.attn_processors` (self- and cross-attention), as the official
    LoRA attention processors were registered; `to_out` is the attention's `to_out.0`.
    """
    names = [name.removesuffix(".processor") for name in unet.attn_processors]
    extra = sorted(set(adapter.lora) - set(range(len(names))))
    if extra:
        raise ValueError(
            f"IP-Adapter {adapter.name} has LoRA weights for {len(adapter.lora)} attention layers, but this model's "
            f"UNet has {len(names)}: use the adapter trained for this base model"
        )
    modules = dict(unet.named_modules())
    state: dict[str, Tensor] = {}
    for key_id, parts in adapter.lora.items():
        attn = modules[names[key_id]]
        for part, layer, target in (
            ("to_q", attn.to_q, "to_q"),
            ("to_k", attn.to_k, "to_k"),
            ("to_v", attn.to_v, "to_v"),
            ("to_out", attn.to_out[0], "to_out.0"),
        ):
            down, up = parts[f"{part}_lora.down"], parts[f"{part}_lora.up"]  # [r, in], [out, r]
            if down.shape[1] != layer.in_features or up.shape[0] != layer.out_features or up.shape[1] != down.shape[0]:
                raise ValueError(
                    f"IP-Adapter {adapter.name}: LoRA {key_id}.{part} has shapes {tuple(down.shape)}, {tuple(up.shape)}, "
                    f"which do not fit {names[key_id]}.{target}: use the adapter trained for this base model"
                )
            state[f"unet.{names[key_id]}.{target}.lora_A.weight"] = down
            state[f"unet.{names[key_id]}.{target}.lora_B.weight"] = up
    return state


@torch.no_grad()
def encode_face_prompt(prompt: FacePrompt, projection: nn.Module, backbone: Backbone) -> tuple[Tensor, Tensor]:
    """(tokens, negative tokens), each [T, C], for one face through one FaceID adapter."""
    adapter = prompt.adapter
    face = prompt.face if prompt.face is not None else analyse_face(prompt.faces, prompt.image, prompt.name)
    if face.embedding.numel() != adapter.id_embed_dim:
        raise ValueError(
            f"IP-Adapter {adapter.name} takes a face embedding of width {adapter.id_embed_dim}, but the face models "
            f"give {face.embedding.numel()}: use an ArcFace recogniser (insightface's buffalo_l)"
        )
    param = next(projection.parameters())
    ids = face.embedding.reshape(1, 1, -1).to(param.device, param.dtype)  # [1, 1, 512]
    both = torch.cat([torch.zeros_like(ids), ids])  # [2, 1, 512]: negative first, as diffusers' recipe
    if adapter.kind == "faceid_plus":
        projection.clip_embeds = _clip_hidden_states(adapter, backbone, face).to(param.device, param.dtype)
        projection.shortcut = prompt.uses_shortcut
    tokens = projection(both)  # [2, T, C]
    if tokens.shape[-1] != adapter.cross_attention_dim:
        raise ValueError(
            f"IP-Adapter {adapter.name} is inconsistent: its projection gives tokens of width {tokens.shape[-1]}, "
            f"its image keys/values take {adapter.cross_attention_dim}"
        )
    return tokens[1], tokens[0]


def _clip_hidden_states(adapter: AdapterWeights, backbone: Backbone, face: Face) -> Tensor:
    """[2, 1, P, hidden]: the penultimate hidden states of an all-zero image and of the aligned face."""
    encoder, extractor = image_encoder_of(backbone.pipe)
    weight = next(encoder.parameters())
    pixels = extractor(face.aligned, return_tensors="pt").pixel_values.to(weight.device, weight.dtype)  # [1, 3, S, S]
    states = encoder(pixels, output_hidden_states=True).hidden_states[-2]  # [1, P, hidden]
    negative = encoder(torch.zeros_like(pixels), output_hidden_states=True).hidden_states[-2]
    if states.shape[-1] != adapter.image_embed_dim:
        raise ValueError(
            f"IP-Adapter {adapter.name} expects image features of width {adapter.image_embed_dim}, but this model's "
            f"image encoder gives {states.shape[-1]} (hidden size): the adapter was trained with another image encoder"
        )
    return torch.cat([negative, states])[:, None]  # [2, 1, P, hidden]


def face_branches(backbone: Backbone, prompts: Sequence[FacePrompt]) -> tuple[list[ImageBranch], list[UnetLora]]:
    """Each face prompt's branch, and the LoRA of each distinct FaceID file among them."""
    unet = backbone.unet
    projections: dict[int, nn.Module] = {}
    loras: dict[int, UnetLora] = {}
    branches = []
    for prompt in prompts:
        weights = site_weights(prompt.adapter, unet)  # first: a wrong base model is the likeliest mistake
        key = id(prompt.adapter)
        if key not in projections:
            projections[key] = build_projection(prompt.adapter, unet)
            if prompt.adapter.lora:
                loras[key] = UnetLora(f"studio_faceid_{len(loras)}", lora_state(prompt.adapter, unet))
        tokens, negative = encode_face_prompt(prompt, projections[key], backbone)
        branches.append(
            ImageBranch(
                weights=weights,
                tokens=tokens,
                negative_tokens=negative,
                scale=site_scales(unet, prompt.scale),
                mask=prompt.mask,
            )
        )
    return branches, list(loras.values())
