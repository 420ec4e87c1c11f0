"""Last stage: appearance pairs, trained with joint self-attention, so self-attention carries object appearance.

    python -m toyworld.train.pairs --base assets/toyworld --out NEW --threads 2

Why this stage exists: the appearance methods (mutual self-attention, VisCtrl, FreeCustom's MRSA) work on
SD because SD's self-attention is content-based: a query on an object finds the keys of a similar object in
another image and takes its values. `bench/self_attention_use.py` measured that the toyworld UNet trained on
single captioned images does not learn this: at 16x16 its self-attention is near-uniform (entropy 0.98 of
uniform), and swapping keys and values from another image at every site moved an object's unsaid pattern by
1.9 grey levels. Nothing in one 64-px image needs a long-range copy that the convolutions cannot make.

So the toyworld is taught the property the way multi-view and reference-based diffusion models are: joint
self-attention over images that share content. A pair is a source scene A and a target scene B whose first
object has the colour and pattern (and half the time the shape) of one of A's objects, elsewhere, at another
size. B's caption leaves that pattern unsaid (and sometimes names the shape only "object"), so the only way to
B's pattern is A. B's queries see A's keys and values in one of the two forms the methods use:

- replace (mutual self-attention, VisCtrl): B attends to A's keys only. Half of these pairs, at t >= 500, are
  edits: B's noisy input is made from a "before" version of B whose copied object has another colour and
  pattern, and the loss asks for the x0 of B itself (epsilon target = noise + sqrt(SNR)·(z_before − z_B)).
  Without them the model only ever learns to fill in what its own input leaves open, and an inverted or
  partly formed target (VisCtrl's, mutual's after its start step) already says its colour and pattern;
- concatenate (FreeCustom): B attends to [own; A; another pair's A], each other image's keys restricted to
  its copied object and raised by a weight w drawn from [0, 3] (MRSA's default is 3). The other pair's A is
  a distractor the caption's colour tells apart; it is hidden when B's caption is dropped.

A rows are ordinary training scenes with ordinary captions, so single-image generation keeps its training
signal, including "unsaid pattern means plain" when no other image is attended. Both rows take SD's epsilon
loss at one shared timestep, as source and target share one at inference. Only the UNet is trained; the
text tower and the VAE stay as they are.

What it does not teach: nothing here shows the model a held-out shape or pattern, and nothing tells the
model which of its sites or steps a method will use: every self-attention layer is joint at every step.

The processor below is training scaffolding, deliberately independent of attention_processors/: the methods
measured on the model must not share code with what taught it.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from transformers import CLIPTextModel, CLIPTokenizer

from ..captions import background_phrase, caption, join_objects, object_phrase
from ..vocab import COLORS, POSITIONS, TRAIN_PATTERNS, TRAIN_SHAPES
from ..world import ObjectSpec, SceneSpec, make_object, render, sample_background, sample_scene
from .export import save_component_atomically
from .run_log import RunLog, args_record
from .stage_loop import StageProgress, warm_cosine
from .unet import MIN_SNR_GAMMA, draw_timesteps, draw_training_noise, encode_text
from .vae import encode_images

SAME_SHAPE = 0.5  # share of targets that keep the source object's shape
SAME_BACKGROUND = 0.5  # share of targets on the source's background (then the caption leaves it unsaid)
SECOND_OBJECT = 0.3  # share of targets with a second, fully described object that copies nothing
UNSAID_SHAPE = 0.5  # share of same-shape targets whose caption says "object" instead of the shape
PATTERNED_MODEL = 0.8  # share of pairs whose copied object is patterned when the source has one
SOURCE_DROPOUT = 0.3  # caption dropout of sources: the unconditional half attends to an uncaptioned source
DISTRACTOR = 0.5  # share of concatenating targets that also see another pair's source
MAX_WEIGHT = 3.0  # concatenated keys get a logit bias drawn from [0, MAX_WEIGHT]
OBJECT_WEIGHT = 4.0  # extra loss weight on the copied object's latent cells: its pattern is a few % of the loss
X0_EMPHASIS = 10.0  # the copied object's extra weight grows as 1/SNR up to this factor (see train_pairs)


@dataclass(frozen=True)
class PairMix:
    """How a step's pairs are split between the forms; the defaults are the bundled run's first stage.

    A continuation can lean towards one method's setting: VisCtrl edits an inverted target under an
    empty prompt, so more edits (`edit`), edits down to lower t (`edit_min_t`) and more dropped target
    captions (`target_dropout`) are what it sees at inference."""

    replace: float = 0.6  # share of pairs in the replace form (the rest concatenate)
    edit: float = 0.5  # share of replace-form pairs at t >= edit_min_t that start from the "before" target
    # Lower, the before/after gap weighs more in the epsilon target: sqrt(SNR) is 0.62 at t = 500, 1.0 at 350.
    edit_min_t: int = 500
    target_dropout: float = 0.25  # caption dropout of targets: VisCtrl edits with empty prompts

    def __post_init__(self) -> None:
        for name in ("replace", "edit", "target_dropout"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a share in [0, 1], got {getattr(self, name)}")
        if not 0 <= self.edit_min_t < 1000:
            raise ValueError(f"edit_min_t must be a timestep in [0, 1000), got {self.edit_min_t}")


@dataclass(frozen=True)
class AppearancePair:
    source: SceneSpec
    target: SceneSpec
    model_index: int  # which source object the target's first object copies
    same_background: bool


def sample_pair(rng: np.random.Generator) -> AppearancePair:
    """A training scene and a target whose first object copies the appearance of one of its objects."""
    source = sample_scene(rng)
    patterned = [i for i, o in enumerate(source.objects) if o.pattern != "plain"]
    pool = patterned if patterned and rng.random() < PATTERNED_MODEL else list(range(len(source.objects)))
    index = int(rng.choice(pool))
    model = source.objects[index]
    shape = model.shape if rng.random() < SAME_SHAPE else str(rng.choice(TRAIN_SHAPES))
    position = str(rng.choice([p for p in POSITIONS if p != model.position]))
    extra = rng.random() < SECOND_OBJECT
    size = str(rng.choice(["small", ""] if extra else ["small", "", "large"]))
    objects: list[ObjectSpec] = [make_object(shape, model.color, model.pattern, size, position, rng)]
    if extra:
        for _ in range(50):
            shape_2 = str(rng.choice(TRAIN_SHAPES))  # draw order kept: it fixes the pair set of the bundled run
            color_2 = str(rng.choice([c for c in COLORS if c != model.color]))
            other = make_object(shape_2, color_2,
                                str(rng.choice(TRAIN_PATTERNS)), "small",
                                str(rng.choice([p for p in POSITIONS if p != position])), rng)
            gap = np.hypot(other.center[0] - objects[0].center[0], other.center[1] - objects[0].center[1])
            if gap > other.radius + objects[0].radius + 3:
                objects.append(other)
                break
    same_background = bool(rng.random() < SAME_BACKGROUND)
    background = source.background if same_background else sample_background(rng)
    return AppearancePair(source, SceneSpec(tuple(objects), background), index, same_background)


def target_caption(pair: AppearancePair, rng: np.random.Generator) -> str:
    """The copied object's pattern and, on the source's background, the background go unsaid; a copied shape
    is sometimes named only "object" (what a prompt says of a held-out shape, which has no trained word)."""
    copied, *others = pair.target.objects
    said = replace(copied, pattern="plain")
    if copied.shape == pair.source.objects[pair.model_index].shape and rng.random() < UNSAID_SHAPE:
        said = replace(said, shape="object")
    phrases = [object_phrase(said, with_position=rng.random() < 0.85)]
    phrases += [object_phrase(o, with_position=True, say_plain=True) for o in others]
    text = join_objects(phrases)
    if not pair.same_background and rng.random() < 0.75:
        text += ", " + background_phrase(pair.target.background)
    return text


@dataclass(frozen=True)
class PairSet:
    pairs: tuple[AppearancePair, ...]
    images: np.ndarray  # (N, 3, H, W, 3) uint8: source, target, the target before the edit
    model_masks: np.ndarray  # (N, H, W) bool: the source object that is copied
    copied_masks: np.ndarray  # (N, H, W) bool: the target's copied object

    def __len__(self) -> int:
        return len(self.pairs)


def before_edit(target: SceneSpec, rng: np.random.Generator) -> SceneSpec:
    """The target with its copied object in another colour and a random pattern, everything else the same."""
    copied, *others = target.objects
    color = str(rng.choice([c for c in COLORS if c != copied.color]))
    return replace(target, objects=(replace(copied, color=color, pattern=str(rng.choice(TRAIN_PATTERNS))), *others))


def build_pair_set(n: int, seed: int) -> PairSet:
    rng = np.random.default_rng(seed)
    pairs = tuple(sample_pair(rng) for _ in range(n))
    sources = [render(p.source) for p in pairs]
    targets = [render(p.target) for p in pairs]
    befores = [render(before_edit(p.target, rng)).image for p in pairs]
    images = np.stack([np.stack([s.image, t.image, b]) for s, t, b in zip(sources, targets, befores, strict=True)])
    model_masks = np.stack([s.objects[p.model_index].mask for s, p in zip(sources, pairs, strict=True)])
    return PairSet(pairs, images, model_masks, np.stack([t.objects[0].mask for t in targets]))


def masks_on_grid(masks: torch.Tensor, tokens: int) -> torch.Tensor:
    """(P, H, W) bool -> (P, tokens) bool on the square token grid: a cell is in when half its area is."""
    side = round(tokens**0.5)
    cells = F.adaptive_avg_pool2d(masks.float().unsqueeze(1), side)  # (P, 1, side, side)
    return (cells >= 0.5).flatten(1)  # (P, side*side)


@dataclass(frozen=True)
class JointLayout:
    """Per pair, how the target's queries see [own; source; distractor] keys (one draw per training step)."""

    replace: torch.Tensor  # (P,) bool: the target sees only its source
    distractor: torch.Tensor  # (P,) bool: a concatenating target also sees another pair's source
    weight: torch.Tensor  # (P,) logit bias on the concatenated keys
    model_masks: torch.Tensor  # (P, H, W) bool: each source's copied object

    _biases: dict = field(default_factory=dict, compare=False, repr=False)  # per (tokens, device, dtype)

    def bias(self, tokens: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """(P, 1, 1, 3N) additive logits over [own; source; distractor] keys, built once per grid size:
        every self-attention layer at one resolution reads the same bias within a step."""
        key = (tokens, str(device), dtype)
        if key not in self._biases:
            self._biases[key] = self._build_bias(tokens).to(device, dtype)
        return self._biases[key]

    def _build_bias(self, tokens: int) -> torch.Tensor:
        inside = masks_on_grid(self.model_masks, tokens)  # (P, N)
        neg = torch.tensor(float("-inf"))
        weight = self.weight.view(-1, 1)
        concat_src = torch.where(inside, weight, neg)  # (P, N)
        concat_other = torch.where(inside.roll(1, 0) & self.distractor.view(-1, 1), weight, neg)
        replace = self.replace.view(-1, 1)
        own = torch.where(replace, neg, torch.zeros(())).expand(-1, tokens)
        src = torch.where(replace, torch.zeros(()), concat_src)
        other = torch.where(replace, neg, concat_other)
        return torch.cat([own, src, other], dim=-1).view(-1, 1, 1, 3 * tokens)


class PairedSelfAttention:
    """Self-attention over a batch laid out [sources; targets]: targets also attend to sources' K/V.

    `layout()` returns the current step's JointLayout; sources attend only to themselves."""

    def __init__(self, layout: Callable[[], JointLayout]) -> None:
        self.layout = layout

    def __call__(self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states=None,
                 attention_mask=None, temb=None, **kwargs) -> torch.Tensor:
        if encoder_hidden_states is not None or hidden_states.ndim != 3 or attn.residual_connection:
            raise ValueError("PairedSelfAttention is for the UNet's plain self-attention layers")
        batch, tokens, _ = hidden_states.shape  # (2P, N, C)
        pairs = batch // 2

        def heads(x: torch.Tensor) -> torch.Tensor:
            return x.view(batch, tokens, attn.heads, -1).transpose(1, 2)  # (2P, H, N, d)

        q, k, v = heads(attn.to_q(hidden_states)), heads(attn.to_k(hidden_states)), heads(attn.to_v(hidden_states))
        k_src, v_src = k[:pairs], v[:pairs]  # (P, H, N, d)
        out_src = F.scaled_dot_product_attention(q[:pairs], k_src, v_src)
        k_tgt = torch.cat([k[pairs:], k_src, k_src.roll(1, 0)], dim=2)  # (P, H, 3N, d)
        v_tgt = torch.cat([v[pairs:], v_src, v_src.roll(1, 0)], dim=2)
        bias = self.layout().bias(tokens, q.device, q.dtype)  # (P, 1, 1, 3N)
        out_tgt = F.scaled_dot_product_attention(q[pairs:], k_tgt, v_tgt, attn_mask=bias)
        out = torch.cat([out_src, out_tgt]).transpose(1, 2).reshape(batch, tokens, -1)  # (2P, N, C)
        return attn.to_out[1](attn.to_out[0](out)) / attn.rescale_output_factor


def draw_layout(pairs: PairSet, idx: np.ndarray, dropped: np.ndarray, rng: np.random.Generator,
                replace_share: float) -> JointLayout:
    p = len(idx)
    replace_form = rng.random(p) < replace_share
    distractor = (rng.random(p) < DISTRACTOR) & ~dropped & ~replace_form
    return JointLayout(torch.from_numpy(replace_form), torch.from_numpy(distractor),
                       torch.from_numpy(rng.uniform(0.0, MAX_WEIGHT, p)).float(),
                       torch.from_numpy(pairs.model_masks[idx]))


def epsilon_towards(noise: torch.Tensor, start: torch.Tensor, x0: torch.Tensor, snr: torch.Tensor) -> torch.Tensor:
    """The epsilon whose x0 estimate from add_noise(start, noise, t) is `x0`: noise + sqrt(SNR)·(start − x0).

    (B, C, h, w) tensors, snr (B,). It is the noise itself when start == x0, the ordinary diffusion target."""
    return noise + snr.sqrt().view(-1, 1, 1, 1) * (start - x0)


def encode_pairs(vae: AutoencoderKL, pairs: PairSet) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and std of every pair's images: (N, 3, C, h, w) each."""
    mean, std = encode_images(vae, pairs.images.reshape(-1, *pairs.images.shape[2:]))  # (3N, C, h, w)
    return mean.view(len(pairs), 3, *mean.shape[1:]), std.view(len(pairs), 3, *std.shape[1:])


def train_pairs(unet: UNet2DConditionModel, text_encoder: CLIPTextModel, tokenizer: CLIPTokenizer,
                pairs: PairSet, latent_mean: torch.Tensor, latent_std: torch.Tensor, scaling_factor: float, *,
                steps: int, pairs_per_batch: int, lr: float, attn_lr: float, seed: int, max_seconds: float,
                log: Callable[[str], None], checkpoint: Callable[[UNet2DConditionModel, dict], None],
                checkpoint_seconds: float = 300.0, ema_decay: float = 0.995,
                mix: PairMix = PairMix()) -> tuple[UNet2DConditionModel, dict]:
    """Fine-tune `unet` on appearance pairs; returns its EMA and a report. latent_*: (N, 3, C, h, w).

    `attn_lr` is the self-attention projections' learning rate: the bundled UNet barely uses its
    self-attention (zeroing it moves an image by a few grey levels), so that path starts weak and learns
    slowly at the rate that keeps the rest of the UNet's single-image skills."""
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    sched = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                          num_train_timesteps=1000)
    snr = sched.alphas_cumprod / (1 - sched.alphas_cumprod)  # (1000,)
    dev = next(unet.parameters()).device
    loss_weight = (torch.clamp(snr, max=MIN_SNR_GAMMA) / snr).to(dev)
    text_encoder.requires_grad_(False).eval()
    ema = copy.deepcopy(unet).eval().requires_grad_(False)
    params = list(unet.parameters())
    named = list(unet.named_parameters())
    groups = [{"params": [q for n, q in named if ".attn1." in n], "base_lr": attn_lr},
              {"params": [q for n, q in named if ".attn1." not in n], "base_lr": lr}]
    opt = torch.optim.AdamW(groups, lr=lr, weight_decay=0.01)
    p = pairs_per_batch
    current: list[JointLayout] = []  # this step's layout, read by every self-attention layer

    stock = unet.attn_processors
    paired = PairedSelfAttention(lambda: current[0])
    unet.set_attn_processor({name: paired if name.endswith("attn1.processor") else AttnProcessor2_0()
                             for name in stock})
    progress = StageProgress("pairs", ema, params, steps=steps, max_seconds=max_seconds, log=log,
                             checkpoint=checkpoint, checkpoint_seconds=checkpoint_seconds, ema_decay=ema_decay)
    unet.train()
    try:
        for step in range(steps):
            for g in opt.param_groups:
                g["lr"] = g["base_lr"] * warm_cosine(step, progress.fraction(step))
            idx = rng.choice(len(pairs), size=p, replace=False)
            src_text = ["" if rng.random() < SOURCE_DROPOUT else caption(pairs.pairs[i].source, rng) for i in idx]
            dropped = rng.random(p) < mix.target_dropout
            tgt_text = ["" if d else target_caption(pairs.pairs[i], rng) for i, d in zip(idx, dropped, strict=True)]
            layout = draw_layout(pairs, idx, dropped, rng, mix.replace)
            current[:] = [layout]
            with torch.no_grad():
                cond = encode_text(text_encoder, tokenizer, src_text + tgt_text)  # (2P, 77, D)
            idx_t = torch.from_numpy(idx)
            mean = latent_mean[idx_t].transpose(0, 1).flatten(0, 1)  # (3P, C, h, w): sources, targets, befores
            std = latent_std[idx_t].transpose(0, 1).flatten(0, 1)
            z_all = (mean + std * torch.randn(mean.shape, generator=gen)) * scaling_factor
            z0, z_before = z_all[: 2 * p], z_all[2 * p :]  # (2P, C, h, w), (P, C, h, w)
            noise = draw_training_noise(z0.shape, gen)
            t = draw_timesteps(p, gen).repeat(2)  # (2P,) one timestep per pair
            edit = layout.replace & (t[:p] >= mix.edit_min_t) & torch.from_numpy(rng.random(p) < mix.edit)  # (P,)
            start_from = torch.cat([z0[:p], torch.where(edit.view(-1, 1, 1, 1), z_before, z0[p:])])  # (2P, C, h, w)
            zt = sched.add_noise(start_from, noise, t)
            target = epsilon_towards(noise, start_from, z0, snr[t])  # (2P, C, h, w): the noise unless edited
            zt, target, t = zt.to(dev), target.to(dev), t.to(dev)
            pred = unet(zt, t, cond.to(dev)).sample
            masks = torch.from_numpy(pairs.copied_masks[idx]).float().unsqueeze(1)  # (P, 1, H, W)
            cells = F.adaptive_avg_pool2d(masks, z0.shape[-2:])  # (P, 1, h, w)
            # Epsilon loss barely sees an x0 error at high t, where the copied pattern is decided and the target's
            # own noisy latent does not show it yet; weighting its cells by 1/SNR (capped) makes it x0 loss there.
            emphasis = torch.clamp(1 / snr[t[:p].cpu()], 1.0, X0_EMPHASIS).view(-1, 1, 1, 1)  # (P, 1, 1, 1)
            weight = torch.cat([torch.ones_like(cells), 1 + OBJECT_WEIGHT * emphasis * cells]).to(dev)  # (2P, 1, h, w)
            loss = (loss_weight[t].view(-1, 1, 1, 1) * weight * (pred - target).pow(2)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            if progress.after_step(step, loss.item()):
                break
    finally:
        unet.set_attn_processor(stock)
    unet.eval()
    return ema, progress.report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", type=Path, default=Path("assets/toyworld"), help="a finished toyworld model")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--overwrite", action="store_true", help="allow replacing an existing model in --out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pairs", type=int, default=8000)
    p.add_argument("--steps", type=int, default=2500)
    p.add_argument("--batch", type=int, default=16, help="pairs per step (the UNet sees twice as many rows)")
    p.add_argument("--lr", type=float, default=6e-4)
    p.add_argument("--attn-lr", type=float, default=3e-3, help="learning rate of the self-attention projections")
    mix = PairMix()
    p.add_argument("--replace", type=float, default=mix.replace, help="share of pairs in the replace form")
    p.add_argument("--edit", type=float, default=mix.edit, help="share of replace pairs (t >= --edit-min-t) that are edits")
    p.add_argument("--edit-min-t", type=int, default=mix.edit_min_t, help="lowest timestep of an edit pair")
    p.add_argument("--target-dropout", type=float, default=mix.target_dropout, help="share of empty target captions")
    p.add_argument("--minutes", type=float, default=float("inf"))
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """Copy --base to --out and fine-tune its UNet there; the UNet is refreshed atomically at checkpoints."""
    args = parse_args(argv)
    try:
        mix = PairMix(args.replace, args.edit, args.edit_min_t, args.target_dropout)
    except ValueError as err:
        raise SystemExit(str(err)) from err
    base, out = args.base.resolve(), args.out.resolve()
    if base == out:
        raise SystemExit("--out must differ from --base: the stage reads the base model while it writes")
    if not (base / "model_index.json").exists():
        raise SystemExit(f"{base} holds no toyworld model (no model_index.json)")
    if (out / "model_index.json").exists():
        if not args.overwrite:
            raise SystemExit(f"{out} already holds a model; pass --overwrite to replace it")
        shutil.rmtree(out)
    elif out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out} is a folder with other files in it; give a new or empty folder")
    elif out.exists():
        out.rmdir()
    shutil.copytree(base, out)
    if args.threads:
        torch.set_num_threads(args.threads)
    log = RunLog(out / "training_log_pairs.txt", append=True)  # a continuation keeps the earlier runs' lines
    recorded_args = args_record(args)
    log(f"appearance-pair stage on {base}: {recorded_args}")

    report_path = out / "training_report.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    if "pairs" in report:  # the base is itself a pair-stage model: keep its record
        report.setdefault("pairs_earlier", []).append(report.pop("pairs"))
    stage: dict = {"args": recorded_args, "status": "running"}
    report["pairs"] = stage

    def write_report() -> None:
        report_path.write_text(json.dumps(report, indent=1, default=str))

    t0 = time.time()
    device = torch.device(args.device)
    tokenizer = CLIPTokenizer.from_pretrained(str(base / "tokenizer"), local_files_only=True)
    text_encoder = CLIPTextModel.from_pretrained(str(base / "text_encoder"), local_files_only=True).to(device)
    vae = AutoencoderKL.from_pretrained(str(base / "vae"), local_files_only=True).to(device).eval()
    unet = UNet2DConditionModel.from_pretrained(str(base / "unet"), local_files_only=True).to(device)
    data = build_pair_set(args.pairs, args.seed + 6)
    mean, std = encode_pairs(vae, data)
    log(f"rendered and encoded {len(data)} pairs in {time.time() - t0:.0f}s")

    def checkpoint(ema: UNet2DConditionModel, stage_report: dict) -> None:
        save_component_atomically(out, "unet", ema)
        stage.update(stage_report)
        write_report()
        log(f"checkpoint at pairs step {stage_report['steps']}")

    ema, stage_report = train_pairs(unet, text_encoder, tokenizer, data, mean, std, float(vae.config.scaling_factor),
                                    steps=args.steps, pairs_per_batch=args.batch, lr=args.lr, attn_lr=args.attn_lr,
                                    seed=args.seed + 7, max_seconds=args.minutes * 60, log=log, checkpoint=checkpoint,
                                    mix=mix)
    save_component_atomically(out, "unet", ema)
    stage.update(stage_report, status="done")
    write_report()
    log(f"done in {time.time() - t0:.0f}s")
    log.close()
    return report


if __name__ == "__main__":
    main()
