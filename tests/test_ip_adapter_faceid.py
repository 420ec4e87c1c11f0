"""FaceID and FaceID-Plus / PlusV2 as studio face prompts, against diffusers' own FaceID recipe
(`pipe.load_ip_adapter(..., image_encoder_folder=None)` + `ip_adapter_image_embeds=[...]`, its LoRA loaded by
diffusers through peft), on the tiny SD1.5 model with random adapters in the official FaceID key layout.

Both sides read the face with insightface's `FaceAnalysis` on the same tiny face-model folder
(tests/face_models.py); the face analysis itself is checked against an independent oracle: the crop the
synthetic face's known position gives, embedded by running the recogniser with onnxruntime directly.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("insightface", reason="FaceID needs insightface (the `faces` extra)")
pytest.importorskip("onnxruntime", reason="FaceID needs onnxruntime (the `faces` extra)")
pytest.importorskip("onnx", reason="the tiny face models are built with onnx")

from pipelines.backbone import Backbone
from pipelines.faces import analyse_face, load_face_models
from pipelines.ip_adapter_faceid import FacePrompt
from pipelines.ip_adapter_weights import load_adapter
from pipelines.text_to_image import generate
from pipelines.tiny_models import tiny_sd15_pipeline
from tests.face_models import FACE, face_picture, write_face_models
from tests.faceid_files import write_faceid
from tests.ip_adapter_files import tiny_image_encoder

SIZE = 64
STEPS = 3
GUIDANCE = 5.0
CENTER = (64, 64)


def with_encoder(pipe):
    encoder, extractor = tiny_image_encoder()
    pipe.register_modules(image_encoder=encoder, feature_extractor=extractor)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def face_dir(tmp_path_factory):
    return write_face_models(tmp_path_factory.mktemp("faces") / "tiny_buffalo")


@pytest.fixture(scope="module")
def faces(face_dir):
    return load_face_models(face_dir)


@pytest.fixture(scope="module")
def models():
    """(the studio's backbone, diffusers' pipeline) on identical copies of the tiny SD1.5 model."""
    return Backbone.from_pipeline(with_encoder(tiny_sd15_pipeline())), with_encoder(tiny_sd15_pipeline())


@pytest.fixture(scope="module")
def files(models, tmp_path_factory):
    unet = models[0].unet
    folder = tmp_path_factory.mktemp("faceid")
    return {
        "faceid": write_faceid(folder, unet, "faceid", seed=1),
        "faceid-nolora": write_faceid(folder, unet, "faceid", seed=1, lora=False, name="nolora.safetensors"),
        "plus": write_faceid(folder, unet, "faceid_plus", seed=2, name="ip-adapter-faceid-plus-t.safetensors"),
        "plusv2": write_faceid(folder, unet, "faceid_plus", seed=2, name="ip-adapter-faceid-plusv2-t.safetensors"),
    }


def diffusers_faceid(pipe, file, face_dir, image, scale: float, plus_v2: bool | None = None) -> torch.Tensor:
    """diffusers' FaceID recipe: insightface's normed_embedding (and, for Plus, the norm_crop'ed face's CLIP
    hidden states set on the projection), negative zeros first."""
    from insightface.app import FaceAnalysis
    from insightface.utils import face_align

    app = FaceAnalysis(name=str(face_dir))
    app.prepare(ctx_id=0, det_size=(640, 640))
    bgr = np.asarray(image)[:, :, ::-1].copy()
    found = app.get(bgr)
    ids = torch.from_numpy(found[0].normed_embedding).reshape(1, 1, 1, -1)  # [1, 1, 1, 512]
    pipe.load_ip_adapter(str(file.parent), subfolder="", weight_name=file.name, image_encoder_folder=None)
    try:
        if plus_v2 is not None:
            aligned = face_align.norm_crop(bgr, landmark=found[0].kps, image_size=224)
            clip = pipe.prepare_ip_adapter_image_embeds([aligned], None, "cpu", 1, True)[0]
            projection = pipe.unet.encoder_hid_proj.image_projection_layers[0]
            projection.clip_embeds = clip
            projection.shortcut = plus_v2
        pipe.set_ip_adapter_scale(scale)
        return pipe(
            "a portrait", ip_adapter_image_embeds=[torch.cat([torch.zeros_like(ids), ids])],
            num_inference_steps=STEPS, guidance_scale=GUIDANCE, width=SIZE, height=SIZE,
            generator=torch.Generator().manual_seed(0), output_type="latent",
        ).images  # fmt: skip
    finally:
        encoder, extractor = pipe.image_encoder, pipe.feature_extractor
        pipe.unload_ip_adapter()
        if getattr(pipe.unet, "peft_config", None):
            pipe.unload_lora_weights()
        pipe.register_modules(image_encoder=encoder, feature_extractor=extractor)


def studio_latents(backbone, prompts) -> torch.Tensor:
    return generate(
        backbone, "a portrait", num_inference_steps=STEPS, guidance_scale=GUIDANCE, width=SIZE, height=SIZE,
        generator=torch.Generator().manual_seed(0), image_prompts=prompts,
    ).latents  # fmt: skip


def close(got: torch.Tensor, want: torch.Tensor) -> None:
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_faceid_with_its_lora_equals_diffusers(models, files, faces, face_dir):
    backbone, pipe = models
    image = face_picture([CENTER], identity=1)
    want = diffusers_faceid(pipe, files["faceid"], face_dir, image, 0.7)
    plain = studio_latents(backbone, [])
    got = studio_latents(backbone, [FacePrompt(image, load_adapter(files["faceid"]), faces, 0.7)])
    close(got, want)
    assert (got - plain).abs().max() > 1e-2, "the face prompt changed nothing: the comparison would be vacuous"
    # The LoRA is part of what matched: without it the same adapter gives another image.
    without = studio_latents(backbone, [FacePrompt(image, load_adapter(files["faceid-nolora"]), faces, 0.7)])
    assert (got - without).abs().max() > 1e-3
    # ...and it is gone afterwards: the cached model is its own again.
    assert not getattr(backbone.unet, "peft_config", None)
    torch.testing.assert_close(studio_latents(backbone, []), plain, atol=0, rtol=0)


@pytest.mark.parametrize("variant", ["plus", "plusv2"])
def test_faceid_plus_equals_diffusers(models, files, faces, face_dir, variant):
    backbone, pipe = models
    image = face_picture([CENTER], identity=2)
    want = diffusers_faceid(pipe, files[variant], face_dir, image, 0.8, plus_v2=variant == "plusv2")
    prompt = FacePrompt(image, load_adapter(files[variant]), faces, 0.8)  # the shortcut read from the file name
    assert prompt.uses_shortcut == (variant == "plusv2")
    close(studio_latents(backbone, [prompt]), want)


def test_the_face_is_detected_aligned_and_embedded(faces, face_dir):
    """Oracle: the similarity that maps the synthetic face's known square onto the crop, and the recogniser
    run directly with onnxruntime on that crop (insightface's ArcFace input: RGB, (x - 127.5) / 127.5)."""
    import cv2
    import onnxruntime

    image = face_picture([CENTER], identity=3)
    face = analyse_face(faces, image)
    half = FACE / 2
    assert face.box == pytest.approx((CENTER[0] - half, CENTER[1] - half, CENTER[0] + half, CENTER[1] + half))
    bgr = np.asarray(image)[:, :, ::-1].copy()

    def crop(size: int) -> np.ndarray:
        s = size / FACE
        matrix = np.array([[s, 0, -s * (CENTER[0] - half)], [0, s, -s * (CENTER[1] - half)]], np.float64)
        return cv2.warpAffine(bgr, matrix, (size, size), borderValue=0.0)

    assert np.abs(face.aligned.astype(int) - crop(224).astype(int)).max() <= 1
    session = onnxruntime.InferenceSession(str(face_dir / "rec.onnx"), providers=["CPUExecutionProvider"])
    blob = (crop(112)[:, :, ::-1].astype(np.float32) - 127.5) / 127.5  # RGB
    raw = session.run(None, {"input.1": blob.transpose(2, 0, 1)[None]})[0][0]
    torch.testing.assert_close(face.embedding, torch.from_numpy(raw / np.linalg.norm(raw)), atol=1e-4, rtol=0)
    assert float(face.embedding.norm()) == pytest.approx(1.0, abs=1e-5)
    # Alignment makes the embedding independent of where the face is; another identity gives another one.
    moved = analyse_face(faces, face_picture([(40, 88)], identity=3))
    other = analyse_face(faces, face_picture([CENTER], identity=4))
    torch.testing.assert_close(moved.embedding, face.embedding, atol=1e-4, rtol=0)
    assert float(other.embedding @ face.embedding) < 0.99


@pytest.mark.parametrize(
    "centers, message",
    [([], "no face found in face.png"), ([(32, 64), (96, 64)], "2 faces found in face.png: FaceID needs one")],
)
def test_no_face_or_two_faces_is_one_clear_error(faces, centers, message):
    with pytest.raises(ValueError, match=message) as error:
        analyse_face(faces, face_picture(centers), "face.png")
    assert "\n" not in str(error.value)


def test_a_missing_face_model_folder_is_not_downloaded(tmp_path):
    with pytest.raises(ValueError, match="face model folder not found"):
        load_face_models(tmp_path / "buffalo_l")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="has no .onnx files"):
        load_face_models(tmp_path / "empty")


@pytest.mark.slow
def test_faceid_sdxl_with_its_lora_equals_diffusers(faces, face_dir, tmp_path):
    """The same on the tiny SDXL model (FaceID has an SDXL release): the layer ids and LoRA ids follow its UNet."""
    from pipelines.tiny_models import tiny_sdxl_pipeline

    backbone, pipe = Backbone.from_pipeline(with_encoder(tiny_sdxl_pipeline())), with_encoder(tiny_sdxl_pipeline())
    file = write_faceid(tmp_path, backbone.unet, "faceid", seed=6)
    image = face_picture([CENTER], identity=6)
    want = diffusers_faceid(pipe, file, face_dir, image, 0.9)
    got = studio_latents(backbone, [FacePrompt(image, load_adapter(file), faces, 0.9)])
    close(got, want)
    assert (got - studio_latents(backbone, [])).abs().max() > 1e-2
