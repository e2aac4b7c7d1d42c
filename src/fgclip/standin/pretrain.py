"""Pretrain the stand-in: the demo's tiny CLIP, trained with plain CLIP contrastive loss on `corpus`.

The result is what a released CLIP is to a user: a model with general visual-text knowledge (colours,
kinds, sizes, positions, motion streaks, counts) and no knowledge of the downstream task. It is trained
like OpenAI CLIP's image-text tower pair (the 77-position text table, `visual_projection` /
`text_projection`, one learnable temperature, symmetric InfoNCE over the batch with equal captions masked:
`fgclip.losses.contrastive.global_loss`), then completed the way `load_pretrained` completes a plain CLIP
checkpoint: `roi_projection <- visual_projection`, `text_filip_projection <- text_projection`, FG-CLIP's
long position tables from the 77-position one; the temporal module keeps its initialisation (mean
pooling). Saved as an ordinary fgclip / HF CLIP directory with its tokenizer, it loads with
`model.init: DIR`.

Deterministic for a seed on one machine and thread count (`torch.manual_seed`, corpus streams seeded per
image); other BLAS builds give slightly different floats.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from functools import partial
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from transformers import PreTrainedTokenizerFast, get_cosine_schedule_with_warmup

from fgclip.configs import demo_config_path
from fgclip.data.dataset import to_pixel_values
from fgclip.data.text import build_word_tokenizer, caption_key
from fgclip.losses.contrastive import global_loss
from fgclip.model.configuration import tiny_config
from fgclip.model.modeling import FGCLIPModel
from fgclip.standin import corpus

PROVENANCE_FILE = "standin.json"


@dataclass(frozen=True)
class PretrainSettings:
    seed: int = 0
    steps: int = 160
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 16
    num_train_images: int = 2048  # rendered once; each epoch re-draws their captions' attribute subsets
    num_heldout_images: int = 500
    log_every: int = 50
    logit_scale_init: float = 2.6592  # ln(1 / 0.07), CLIP's own start: ln 100 saturates a random model


@dataclass
class PretrainResult:
    model: FGCLIPModel
    tokenizer: PreTrainedTokenizerFast
    losses: list[float]  # per step
    heldout: dict  # zero-shot retrieval on the held-out split
    seconds: float  # wall
    cpu_seconds: float  # process CPU time (all threads): the cost on an otherwise idle machine


def demo_tiny_architecture() -> dict:
    """The demo's `model.tiny` settings (src/fgclip/configs/demo.yaml): the stand-in has its architecture. Read
    from the YAML itself: the stand-in is library code and does not use the config system."""
    return dict(yaml.safe_load(demo_config_path().read_text())["model"]["tiny"])


def standin_tokenizer() -> PreTrainedTokenizerFast:
    return build_word_tokenizer(corpus.standin_vocabulary())


def build_standin_model(tokenizer: PreTrainedTokenizerFast) -> FGCLIPModel:
    config = tiny_config(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **demo_tiny_architecture(),
    )
    return FGCLIPModel(config)


def pretrain(settings: PretrainSettings = PretrainSettings(), *, log=None) -> PretrainResult:
    log = log or partial(print, flush=True)
    started, cpu_started = time.perf_counter(), time.process_time()
    torch.manual_seed(settings.seed)
    tokenizer = standin_tokenizer()
    model = build_standin_model(tokenizer).train()
    with torch.no_grad():
        model.logit_scale.fill_(settings.logit_scale_init)
    images, _, _ = corpus.render_batch(
        settings.seed, "train", range(settings.num_train_images)
    )  # (N, H, W, 3)
    log(f"[standin] {len(images)} training images rendered ({time.perf_counter() - started:.1f} s)")
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    schedule = get_cosine_schedule_with_warmup(optimizer, settings.warmup_steps, settings.steps)
    losses = []
    for step, (indices, captions) in enumerate(_batches(settings), start=1):
        loss = _contrastive_step(model, tokenizer, to_pixel_values(images[indices]), captions)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        model.clamp_logit_scales()
        losses.append(loss.item())
        if step % settings.log_every == 0 or step == settings.steps:
            recent = float(np.mean(losses[-settings.log_every :]))
            log(
                f"[standin] step {step}/{settings.steps} loss {recent:.3f} "
                f"({time.perf_counter() - started:.0f} s wall, {time.process_time() - cpu_started:.0f} s CPU)"
            )
    complete_fgclip_heads(model)
    model.eval()
    heldout = heldout_retrieval(model, tokenizer, settings.seed, settings.num_heldout_images)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    return PretrainResult(model, tokenizer, losses, heldout, seconds, cpu_seconds)


def _batches(settings: PretrainSettings):
    """(image indices, training captions) per step: epochs of seeded permutations, captions re-drawn per epoch."""
    generator = np.random.default_rng([settings.seed, 7])
    per_epoch = settings.num_train_images // settings.batch_size
    step = 0
    while step < settings.steps:
        epoch = step // per_epoch
        order = generator.permutation(settings.num_train_images)
        for b in range(per_epoch):
            if step == settings.steps:
                return
            indices = np.sort(order[b * settings.batch_size : (b + 1) * settings.batch_size])
            yield indices, [_training_caption(settings.seed, int(i), epoch) for i in indices]
            step += 1


def _training_caption(seed: int, index: int, epoch: int) -> str:
    if epoch == 0:
        return corpus.corpus_image(seed, "train", index).caption
    objects = corpus.corpus_image(seed, "train", index).objects
    return corpus.describe(objects, np.random.default_rng([seed, 0, index, epoch]))


def _contrastive_step(model: FGCLIPModel, tokenizer, pixel_values: torch.Tensor, captions: list[str]):
    text = tokenizer(captions, padding=True, return_tensors="pt")
    image_embeds = model.frame_embeddings(pixel_values)  # (B, D)
    text_embeds = F.normalize(model.get_text_features(text["input_ids"], text["attention_mask"]), dim=-1)
    keys = torch.tensor([caption_key(c) for c in captions])  # (B,)
    loss, _ = global_loss(image_embeds, text_embeds, keys, model.logit_scale.exp())
    return loss


@torch.no_grad()
def complete_fgclip_heads(model: FGCLIPModel) -> None:
    """What `load_pretrained` does for a plain CLIP: FG-CLIP's heads and long tables from the trained ones."""
    model.copy_heads_from_pretrained()
    model.build_long_position_tables()


@torch.no_grad()
def heldout_retrieval(model: FGCLIPModel, tokenizer, seed: int, num_images: int) -> dict:
    """Image <-> full-caption R@1 on the held-out split, through both text paths, against chance 1/N."""
    images, _, captions = corpus.render_batch(seed, "heldout", range(num_images))
    image_embeds = model.frame_embeddings(to_pixel_values(images))  # (N, D)
    text = tokenizer(captions, padding=True, return_tensors="pt")
    report = {"num_images": num_images, "chance_R@1": 1.0 / num_images}
    paths = {"short": model.get_text_features, "long": model.get_caption_features}
    for name, encode in paths.items():
        text_embeds = F.normalize(encode(text["input_ids"], text["attention_mask"]), dim=-1)  # (N, D)
        similarity = image_embeds @ text_embeds.T  # (N, N)
        truth = torch.arange(num_images)
        report[f"{name}_text/image_to_text_R@1"] = (similarity.argmax(1) == truth).float().mean().item()
        report[f"{name}_text/text_to_image_R@1"] = (similarity.argmax(0) == truth).float().mean().item()
    return report


def save_standin(result: PretrainResult, settings: PretrainSettings, out_dir: str | Path) -> Path:
    out_dir = Path(out_dir)
    result.model.save_pretrained(out_dir)
    result.tokenizer.save_pretrained(out_dir)
    provenance = {
        "what": "fgclip pretrained stand-in (tiny CLIP, global contrastive on the synthetic image corpus)",
        "settings": asdict(settings),
        "code_hash": code_hash(settings),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "seconds": round(result.seconds, 1),
        "cpu_seconds": round(result.cpu_seconds, 1),
        "loss_first_last_50": [float(np.mean(result.losses[:50])), float(np.mean(result.losses[-50:]))],
        "heldout": result.heldout,
    }
    (out_dir / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2))
    return out_dir


def code_hash(settings: PretrainSettings) -> str:
    """Hash of the corpus + pretraining code, the demo architecture and the settings (what the weights depend on)."""
    digest = hashlib.sha256()
    for name in ("corpus.py", "pretrain.py"):
        digest.update((resources.files("fgclip.standin") / name).read_bytes())
    for name in ("scene.py", "vocabulary.py"):  # renderer and palette
        digest.update((resources.files("fgclip.synthetic") / name).read_bytes())
    digest.update(json.dumps([asdict(settings), demo_tiny_architecture()], sort_keys=True).encode())
    return digest.hexdigest()[:16]


def loss_floor(batch_size: int) -> float:
    """ln(batch): the loss of uniform scores (an untrained model), for logs and tests."""
    return math.log(batch_size)
