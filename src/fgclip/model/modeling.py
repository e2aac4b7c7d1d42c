"""`FGCLIPModel`: a CLIP that returns clip, frame, region and caption features. It computes no loss.

Key layout matches HF `CLIPModel` and FG-CLIP checkpoints (`text_model.*`, `vision_model.*`,
`visual_projection`, `text_projection`, `text_filip_projection`, `roi_projection`, `logit_scale`,
`logit_scale_finegraind`, `logit_scale_hardneg`, and FG-CLIP's long-caption position tables
`text_model.embeddings.position_embedding_ori` / `_res`), so both load without renaming.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers.masking_utils import create_causal_mask
from transformers.models.clip.modeling_clip import CLIPPreTrainedModel, CLIPTextModel, CLIPVisionModel

from fgclip.model.configuration import FGCLIPConfig
from fgclip.model.long_text import interpolate_positions, long_position_embeds
from fgclip.model.regions import pool_region_features
from fgclip.model.temporal import TemporalPooler


class FGCLIPModel(CLIPPreTrainedModel):
    config: FGCLIPConfig
    config_class = FGCLIPConfig
    base_model_prefix = "fgclip"
    _keys_to_ignore_on_load_unexpected = [r"memory_bank\..*"]

    def __init__(self, config: FGCLIPConfig):
        super().__init__(config)
        vision_width = config.vision_config.hidden_size
        text_width = config.text_config.hidden_size
        dim = config.projection_dim

        self.text_model = CLIPTextModel._from_config(config.text_config)
        # FG-CLIP's long-caption tables live beside the 77-position one, under FG-CLIP's key names.
        long_positions = config.long_text_max_positions
        self.text_model.embeddings.position_embedding_ori = nn.Embedding(long_positions, text_width)
        self.text_model.embeddings.position_embedding_res = nn.Embedding(long_positions, text_width)
        self.vision_model = CLIPVisionModel._from_config(config.vision_config)
        self.visual_projection = nn.Linear(vision_width, dim, bias=False)
        self.text_projection = nn.Linear(text_width, dim, bias=False)
        # FG-CLIP heads: region features and global (long) captions get their own projections.
        self.roi_projection = nn.Linear(vision_width, dim, bias=False)
        self.text_filip_projection = nn.Linear(text_width, dim, bias=False)
        self.temporal = TemporalPooler(
            dim, config.temporal_num_layers, config.temporal_num_heads, config.max_frames
        )
        # Three log-temperatures: global, region ("finegraind" is FG-CLIP's spelling), hard negatives.
        init_value = torch.tensor(float(config.logit_scale_init_value))
        self.logit_scale = nn.Parameter(init_value.clone())
        self.logit_scale_finegraind = nn.Parameter(init_value.clone())
        self.logit_scale_hardneg = nn.Parameter(init_value.clone())
        # A slot for the region memory bank (`fgclip.losses.memory_bank`), filled by whoever trains the model:
        # buffers only, so a run's bank is saved with its checkpoints and restored on resume, and a new run
        # from a saved model starts without one (its keys are ignored on load; DESIGN §5).
        self.memory_bank: nn.Module | None = None
        self.post_init()

    def _init_weights(self, module):
        super()._init_weights(module)
        factor = self.config.initializer_factor
        if isinstance(module, TemporalPooler):
            _init_temporal_encoder(module.encoder, std=self.config.initializer_range * factor)
            # Zero scores: the clip embedding starts as the mean of its frames.
            init.zeros_(module.position_embedding)
            init.zeros_(module.score.weight)
            init.zeros_(module.score.bias)
        elif isinstance(module, FGCLIPModel):
            init.normal_(
                module.visual_projection.weight, std=module.visual_projection.in_features**-0.5 * factor
            )
            init.normal_(module.text_projection.weight, std=module.text_projection.in_features**-0.5 * factor)
            module.copy_heads_from_pretrained()
            module.build_long_position_tables()
            for scale in module.logit_scales().values():
                init.constant_(scale, float(self.config.logit_scale_init_value))

    def copy_heads_from_pretrained(self) -> None:
        """`roi_projection <- visual_projection`, `text_filip_projection <- text_projection` (DESIGN §4)."""
        init.copy_(self.roi_projection.weight, self.visual_projection.weight)
        init.copy_(self.text_filip_projection.weight, self.text_projection.weight)

    def build_long_position_tables(self) -> None:
        """Both long tables <- FG-CLIP's 77 -> 248 interpolation of the 77-position table (DESIGN §4)."""
        embeddings = self.text_model.embeddings
        short_table = embeddings.position_embedding.weight.detach()  # (77, C)
        long_table = interpolate_positions(short_table, self.config.long_text_keep_positions)  # (248, C)
        init.copy_(embeddings.position_embedding_ori.weight, long_table)
        init.copy_(embeddings.position_embedding_res.weight, long_table)

    def logit_scales(self) -> dict[str, nn.Parameter]:
        return {
            "logit_scale": self.logit_scale,
            "logit_scale_finegraind": self.logit_scale_finegraind,
            "logit_scale_hardneg": self.logit_scale_hardneg,
        }

    @torch.no_grad()
    def clamp_logit_scales(self) -> None:
        """Clamp the log-temperature parameters in place (the model's own copy; DeepSpeed's fp32 master
        weights are clamped by `fgclip.training.callbacks.TemperatureClamp`)."""
        for scale in self.logit_scales().values():
            scale.clamp_(max=self.config.logit_scale_max)

    # ----------------------------------------------------------------------------------------------- vision
    def encode_frames(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pixel_values (N, 3, H, W) -> (pooled CLS features (N, Cv), dense patch features (N, Cv, h, w)).

        The encoder runs once up to its penultimate layer; the last layer then runs once on that state with
        two kinds of token: the CLS token attends as usual (the image embedding), the patch tokens take
        attention's value path instead (FG-CLIP's dense features, which keep each patch's own content).
        """
        vision = self.vision_model
        hidden = vision.pre_layrnorm(vision.embeddings(pixel_values))  # (N, 1+P, Cv)
        *layers, last = vision.encoder.layers
        for layer in layers:
            hidden = layer(hidden, None)
        if last.gradient_checkpointing and self.training:  # as HF checkpoints the layers it calls itself
            hidden = last._gradient_checkpointing_func(_last_layer, last, hidden)
        else:
            hidden = _last_layer(last, hidden)  # (N, 1+P, Cv)
        pooled = vision.post_layernorm(hidden[:, 0])  # (N, Cv)
        dense = vision.post_layernorm(hidden[:, 1:])  # (N, P, Cv)
        grid_h, grid_w = _patch_grid(self.config.vision_config, pixel_values.shape[-2:])
        dense = dense.transpose(1, 2).reshape(dense.shape[0], -1, grid_h, grid_w)  # (N, Cv, h, w)
        return pooled, dense

    def get_image_features(self, pixel_values: torch.Tensor, **_) -> torch.Tensor:
        """Projected image embeddings (N, D), unnormalised, as HF CLIP's `get_image_features` used to return."""
        return self.visual_projection(self.vision_model(pixel_values=pixel_values).pooler_output)

    def frame_embeddings(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> normalised frame embeddings (N, D) (no dense features: inference only)."""
        return _normalize(self.get_image_features(pixel_values))

    def clip_embeddings(self, frame_embeds: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """(B, T, D) normalised frame embeddings -> normalised clip embeddings (B, D)."""
        return _normalize(self.temporal(frame_embeds, frame_mask))

    # ------------------------------------------------------------------------------------------------- text
    def get_text_features(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        *,
        tower_gradient: bool = True,
        **_,
    ) -> torch.Tensor:
        """Region / hard-negative / short text embeddings (N, D): 77-position table, `text_projection`.
        `tower_gradient=False`: only the projection learns from them (`region_stop_gradient`)."""
        pooled = self.text_model(input_ids=input_ids, attention_mask=attention_mask).pooler_output  # (N, C)
        return self.text_projection(pooled if tower_gradient else pooled.detach())

    def get_caption_features(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Global-caption embeddings (N, D): long position table, `text_filip_projection`, unnormalised."""
        return self.text_filip_projection(self._pooled_long_text(input_ids, attention_mask))

    def _pooled_long_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """HF `CLIPTextModel.forward` with the long position table in place of the 77 one (FG-CLIP's long path).

        Every caption on this path uses the long table, whatever its length, as FG-CLIP does; the rest
        (causal mask, encoder, final LayerNorm, pooling at EOS) is HF's, step for step.
        """
        text = self.text_model
        embeddings = text.embeddings
        positions = long_position_embeds(
            embeddings.position_embedding_ori.weight,
            embeddings.position_embedding_res.weight,
            self.config.long_text_keep_positions,
            input_ids.shape[-1],
        )  # (L, C)
        hidden = embeddings.token_embedding(input_ids) + positions  # (N, L, C)
        mask = create_causal_mask(
            config=text.config, inputs_embeds=hidden, attention_mask=attention_mask, cache=None
        )
        hidden = text.encoder(inputs_embeds=hidden, attention_mask=mask, is_causal=True).last_hidden_state
        hidden = text.final_layer_norm(hidden)  # (N, L, C)
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        return hidden[rows, _eos_index(input_ids, text.eos_token_id)]  # (N, C)

    # ---------------------------------------------------------------------------------------------- forward
    def forward(
        self,
        pixel_values: torch.Tensor,
        frame_mask: torch.Tensor,
        caption_ids: torch.Tensor | None = None,
        caption_mask: torch.Tensor | None = None,
        region_boxes: torch.Tensor | None = None,
        region_box_mask: torch.Tensor | None = None,
        region_valid: torch.Tensor | None = None,
        region_caption_ids: torch.Tensor | None = None,
        region_caption_mask: torch.Tensor | None = None,
        hard_negative_ids: torch.Tensor | None = None,
        hard_negative_mask: torch.Tensor | None = None,
        label_prompt_ids: torch.Tensor | None = None,
        label_prompt_mask: torch.Tensor | None = None,
        **_batch_extras,
    ) -> dict[str, torch.Tensor]:
        """Features of a batch (DESIGN §3). All embeddings are L2-normalised.

        Region outputs are packed: row m is the m-th True entry of `region_valid` in row-major order, so
        no padded slot can reach a loss. Keys present only when their inputs are given. `label_prompt_ids`
        (P, L): the video-label loss's prompts, encoded like global captions (`label_prompt_embeds`, (P, D)).
        """
        batch_size, num_frames = frame_mask.shape
        frame_index = _frame_index(frame_mask)  # (B, T), -1 for padded frames
        pooled, dense = self.encode_frames(pixel_values[frame_mask])  # (N, Cv), (N, Cv, h, w)
        frame_embeds = _normalize(self.visual_projection(pooled))  # (N, D)
        frame_grid = frame_embeds.new_zeros(batch_size, num_frames, frame_embeds.shape[-1])
        frame_grid[frame_mask] = frame_embeds  # (B, T, D)
        features = {
            "frame_embeds": frame_grid,
            "clip_embeds": self.clip_embeddings(frame_grid, frame_mask),  # (B, D)
            **self._temperatures(),
        }
        if caption_ids is not None:
            features["caption_embeds"] = _normalize(self.get_caption_features(caption_ids, caption_mask))
        if label_prompt_ids is not None:
            prompts = self.get_caption_features(label_prompt_ids, label_prompt_mask)  # (P, D)
            features["label_prompt_embeds"] = _normalize(prompts)
        if region_valid is not None:
            features.update(
                self._region_features(dense, frame_index, region_boxes, region_box_mask, region_valid)
            )
            features.update(
                self._region_text_features(
                    region_valid,
                    region_caption_ids,
                    region_caption_mask,
                    hard_negative_ids,
                    hard_negative_mask,
                )
            )
        return features

    def _temperatures(self) -> dict[str, torch.Tensor]:
        """{log-temperature name: multiplier}: one name for a temperature, parameter and feature alike.

        The multiplier is exp(min(log-scale, logit_scale_max)): the losses never see a temperature above the
        ceiling, whatever holds the weights (a bf16 copy under DeepSpeed whose fp32 master drifted, a
        checkpoint saved above it, a wrapper that skipped the callback). `clamp`'s gradient is the identity at
        and below the ceiling (bit-equal to plain exp there) and zero above it, so a log-scale that is above
        gets no gradient and would stay there: `TemperatureClamp` still brings the weight itself (the fp32
        master under DeepSpeed) back to the ceiling after every optimizer step, where gradient flows again.
        """
        ceiling = self.config.logit_scale_max
        return {name: scale.clamp(max=ceiling).exp() for name, scale in self.logit_scales().items()}

    def _region_features(self, dense, frame_index, region_boxes, region_box_mask, region_valid):
        pooled = pool_region_features(
            dense.detach() if self.config.region_stop_gradient else dense,
            frame_index,
            region_boxes,
            region_box_mask,
            region_valid,
            pooling=self.config.region_pooling,
        )  # (M, Cv)
        return {"region_embeds": _normalize(self.roi_projection(pooled.to(self.roi_projection.weight.dtype)))}

    def _region_text_features(self, region_valid, caption_ids, caption_mask, negative_ids, negative_mask):
        if caption_ids is None:
            return {}
        texts = [caption_ids[region_valid]]  # (M, L)
        masks = [caption_mask[region_valid]]
        num_regions = texts[0].shape[0]
        if negative_ids is not None:
            present = negative_mask[region_valid].any(-1)  # (M, K)
            texts.append(negative_ids[region_valid][present])  # (H, L)
            masks.append(negative_mask[region_valid][present])
        ids, mask = _pad_cat(texts, masks)
        towers = not self.config.region_stop_gradient
        embeds = _normalize(self.get_text_features(ids, mask, tower_gradient=towers))  # (M + H, D)
        features = {"region_text_embeds": embeds[:num_regions]}
        if negative_ids is not None:
            negatives = embeds.new_zeros(*present.shape, embeds.shape[-1])  # (M, K, D)
            negatives[present] = embeds[num_regions:]
            features["hard_negative_embeds"] = negatives
            features["hard_negative_present"] = present
        return features


def _init_temporal_encoder(encoder: nn.TransformerEncoder, std: float) -> None:
    """Every weight matrix N(0, std), biases 0, as CLIP's own layers (std 0.02 · factor).

    HF's generic init would give the feed-forward and attention-output linears N(0, 1) (the top-level
    config has no `initializer_range`: it falls back to `initializer_factor`) and the fused `in_proj`
    PyTorch's Xavier init; at D = 512 that made the context of 8 unit-norm frames ~11,700 in norm.
    """
    for layer in encoder.layers:
        attention = layer.self_attn
        init.normal_(attention.in_proj_weight, std=std)
        init.zeros_(attention.in_proj_bias)
        for linear in (attention.out_proj, layer.linear1, layer.linear2):
            init.normal_(linear.weight, std=std)
            init.zeros_(linear.bias)


def _last_layer(layer, hidden: torch.Tensor) -> torch.Tensor:
    """The last encoder layer for both outputs in one pass: (N, 1+P, C) -> (N, 1+P, C).

    Row 0 (CLS) is the layer's ordinary output: its query attends to every token's key and value. Rows 1..P
    are the value path, x + out(v(ln1(x))) then the MLP: FG-CLIP's dense features. Only the CLS query and
    its attention are computed on top of the value path, so the last layer costs about what one ordinary
    layer does (queries and attention scores for the patch tokens would be discarded).
    """
    attention = layer.self_attn
    normed = layer.layer_norm1(hidden)  # (N, 1+P, C)
    values = attention.v_proj(normed)  # (N, 1+P, C)
    heads = (hidden.shape[0], -1, attention.num_heads, attention.head_dim)
    query = attention.q_proj(normed[:, :1]).view(heads).transpose(1, 2)  # (N, h, 1, d)
    keys = attention.k_proj(normed).view(heads).transpose(1, 2)  # (N, h, 1+P, d)
    cls = F.scaled_dot_product_attention(
        query,
        keys,
        values.view(heads).transpose(1, 2),
        dropout_p=attention.dropout if attention.training else 0.0,
        scale=attention.scale,
    )  # (N, h, 1, d)
    mixed = torch.cat(
        [cls.transpose(1, 2).reshape(hidden.shape[0], 1, -1), values[:, 1:]], dim=1
    )  # (N, 1+P, C)
    hidden = hidden + attention.out_proj(mixed)
    return hidden + layer.mlp(layer.layer_norm2(hidden))


def _eos_index(input_ids: torch.Tensor, eos_token_id: int) -> torch.Tensor:
    """(N, L) -> (N,) index of the pooled token, as HF CLIP chooses it."""
    if eos_token_id == 2:  # HF's legacy CLIP configs: the largest id, OpenAI's EOT (last vocabulary entry)
        return input_ids.argmax(dim=-1)
    return (input_ids == eos_token_id).int().argmax(dim=-1)


def _patch_grid(vision_config, image_hw) -> tuple[int, int]:
    patch = vision_config.patch_size
    patch_h, patch_w = (patch, patch) if isinstance(patch, int) else patch
    return image_hw[0] // patch_h, image_hw[1] // patch_w


def _frame_index(frame_mask: torch.Tensor) -> torch.Tensor:
    """Index of each real frame among all real frames of the batch (row-major); -1 for padded frames."""
    index = frame_mask.flatten().cumsum(0).view_as(frame_mask) - 1
    return index.masked_fill(~frame_mask, -1)


def _normalize(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, dim=-1)


def _pad_cat(ids: list[torch.Tensor], masks: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    length = max(t.shape[-1] for t in ids)
    padded_ids = [F.pad(t, (0, length - t.shape[-1])) for t in ids]
    padded_masks = [F.pad(m, (0, length - m.shape[-1])) for m in masks]
    return torch.cat(padded_ids), torch.cat(padded_masks)
