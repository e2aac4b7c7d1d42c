"""Train the anomaly head from video-level labels: pooling, balanced batches, validation split, checkpoints.

- **Pooling.** A video longer than `max_len` snippets is uniformly pooled to `max_len` for training (VadCLIP's
  `uniform_extract`: bin edges `linspace(0, S, max_len + 1)` cast to int, each bin the mean of its snippets);
  shorter videos are padded. `pool_snippets` returns the bins, `unpool_scores` maps bin scores back to the S
  snippets. At evaluation nothing is pooled: long videos are cut into `max_len` chunks (`head_snippet_scores`).
- **Batches.** Every step draws half its videos from the normal and half from the abnormal training videos
  (without replacement inside a step), as VadCLIP's paired normal / abnormal loaders.
- **Seeds.** `seed` fixes the head's initialisation, dropout, the batches and the validation split: the same
  seed gives the same head, bit for bit, on the same machine **at the same torch thread count** only (CPU
  kernels sum in a thread-dependent order; 1 vs 2 threads moved a stand-in seed by 0.021 frame AUC, issue 24).
  The count is not pinned here (the caller's `OMP_NUM_THREADS` / `torch.set_num_threads` rules); `head.json`
  records it as `torch_threads`, so a reproduction can set the same.
- **Selection.** The validation videos are carved from the *training* list, stratified by label
  (`val_fraction` of the normal and of the abnormal videos, at least one of each). Only video labels exist
  for them, so the selection metric is the **video-level ROC-AUC** of a video score = the max snippet score
  (`selection_score="max"`, default) or the top-k mean the loss uses (`"topk"`). The checkpoint of the best
  validation AUC is kept; ties (video AUC saturates early on easy data) go to the lower validation MIL loss
  (the training BCE on whole validation videos), then to the earlier step. Selecting on the test list is refused unless asked for
  (`select_on_test=True`), and the report then says so in capitals.

Outputs in `out_dir`: `head.safetensors` + `head.json` (the selected head: config, selection, split),
`last.safetensors`, `metrics.jsonl` (one row per step; validation rows carry `val_auc`), `loss.png`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from sklearn.metrics import roc_auc_score

from fgclip.head.features import FeatureError, VideoFeatures, VideoLabel
from fgclip.head.model import AnomalyHead, HeadConfig
from fgclip.head.objective import mil_align_loss, mil_loss, topk_mean
from fgclip.model.errors import reading_back

HEAD_WEIGHTS = "head.safetensors"
HEAD_CONFIG = "head.json"
SELECTION_SCORES = ("max", "topk")


class SelectionOnTestRefused(FeatureError):
    """Model selection on the test videos was asked for implicitly (a test list) without the explicit flag."""


@dataclass(frozen=True)
class TrainOptions:
    steps: int = 300
    batch_size: int = 16  # half normal, half abnormal
    lr: float = 1e-3
    weight_decay: float = 1e-2
    eval_every: int = 25
    seed: int = 0
    val_fraction: float = 0.2
    selection_score: str = "max"
    align_weight: float = 1.0  # weight of the MIL-align loss when class prompts are given

    def __post_init__(self):
        if self.selection_score not in SELECTION_SCORES:
            raise ValueError(
                f"selection_score must be one of {SELECTION_SCORES}, got {self.selection_score!r}"
            )
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.steps < 1 or self.batch_size < 2 or self.eval_every < 1:
            raise ValueError(f"need steps >= 1, batch_size >= 2, eval_every >= 1; got {self}")


@dataclass(frozen=True)
class Split:
    train: list[str]
    validation: list[str]
    source: str  # what the validation videos are, printed and written to head.json
    on_test: bool = False


@dataclass(frozen=True)
class ClassPrompts:
    """Text embeddings of class prompts for the MIL-align branch: row 0 must be Normal."""

    classes: tuple[str, ...]
    embeddings: np.ndarray  # (C, D) L2-normalised, the features' space

    @classmethod
    def from_npz(cls, path: str | Path) -> ClassPrompts:
        data = np.load(path)
        if "classes" not in data or "embeddings" not in data:
            raise FeatureError(f"{path}: needs arrays 'classes' (C,) and 'embeddings' (C, D)")
        classes = tuple(str(c) for c in data["classes"])
        if classes[0].lower() != "normal" or len(classes) != len(data["embeddings"]):
            raise FeatureError(f"{path}: classes[0] must be Normal and there must be one embedding per class")
        embeddings = data["embeddings"].astype(np.float32)
        return cls(classes, embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True))

    def index(self, label: VideoLabel) -> int:
        if label.label_class not in self.classes:
            raise FeatureError(
                f"video {label.name}: class {label.label_class!r} not among the prompts' {self.classes}"
            )
        return self.classes.index(label.label_class)


@dataclass
class TrainedHead:
    head: AnomalyHead
    report: dict
    history: list[dict] = field(default_factory=list)


def pool_snippets(features: np.ndarray, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(S, D) -> (min(S, max_len), D) pooled features and the (T + 1,) bin edges into the S snippets."""
    s = len(features)
    if s <= max_len:
        return features, np.arange(s + 1)
    edges = np.linspace(0, s, max_len + 1).astype(np.int64)  # strictly increasing when s > max_len
    pooled = np.stack([features[a:b].mean(0) for a, b in zip(edges[:-1], edges[1:], strict=True)])
    return pooled.astype(features.dtype), edges


def unpool_scores(bin_scores: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """(T,) scores of pooled bins -> (S,) snippet scores: every snippet takes its bin's score."""
    return np.repeat(np.asarray(bin_scores), np.diff(edges))


def head_snippet_scores(head: AnomalyHead, features: np.ndarray) -> np.ndarray:
    """(S, D) features of one whole video -> (S,) snippet scores (see `score_videos`)."""
    return score_videos(head, [features])[0]


@torch.no_grad()
def score_videos(head: AnomalyHead, videos: list[np.ndarray], batch_chunks: int = 64) -> list[np.ndarray]:
    """Snippet scores of whole videos: each cut into `max_len` chunks (no pooling at evaluation), the chunks
    of all videos padded into batches of `batch_chunks` (padding is masked, so a chunk scores as if alone)."""
    head.eval()
    max_len = head.config.max_len
    chunks = [
        (v, torch.tensor(f[i : i + max_len]))  # a copy: features may be read-only memory maps
        for v, f in enumerate(videos)
        for i in range(0, len(f), max_len)
    ]
    parts: list[list[np.ndarray]] = [[] for _ in videos]
    for first in range(0, len(chunks), batch_chunks):
        batch = chunks[first : first + batch_chunks]
        lengths = torch.tensor([len(c) for _, c in batch])  # (n,)
        padded = torch.nn.utils.rnn.pad_sequence([c for _, c in batch], batch_first=True)  # (n, T, D)
        scores = head(padded, lengths)["snippet_scores"].double().numpy()  # (n, T)
        for row, (video, _) in enumerate(batch):
            parts[video].append(scores[row, : lengths[row]])
    return [np.concatenate(p) for p in parts]


def video_score(snippet_scores: np.ndarray, rule: str) -> float:
    if rule == "max":
        return float(snippet_scores.max())
    scores = torch.from_numpy(snippet_scores)[None]
    return float(topk_mean(scores, torch.tensor([len(snippet_scores)]))[0])


def split_training_videos(
    labels: dict[str, VideoLabel],
    *,
    val_fraction: float,
    seed: int,
    test_labels: dict[str, VideoLabel] | None = None,
    select_on_test: bool = False,
) -> Split:
    """Validation videos from the training list (stratified); the test list only with `select_on_test`."""
    if test_labels is not None:
        shared = sorted(set(labels) & set(test_labels))
        if shared:
            raise FeatureError(
                f"{len(shared)} video(s) are in both the training and the test list, e.g. {shared[:5]}"
            )
        if not select_on_test:
            raise SelectionOnTestRefused(
                "a test list was given for model selection: refused (it would choose the checkpoint on the test "
                "videos and inflate the reported numbers); drop it, or pass --select-on-test to do so knowingly"
            )
        return Split(
            sorted(labels), sorted(test_labels), "TEST SET (--select-on-test): selected on test videos", True
        )
    if select_on_test:
        raise FeatureError("select_on_test needs the test list (--test-list)")
    rng = np.random.default_rng([seed, 1])
    validation: list[str] = []
    for abnormal in (False, True):
        group = sorted(n for n, label in labels.items() if label.abnormal == abnormal)
        take = max(1, int(round(val_fraction * len(group))))
        if len(group) - take < 1:
            kind = "abnormal" if abnormal else "normal"
            raise FeatureError(
                f"need at least 2 {kind} training videos to carve a validation split, got {len(group)}"
            )
        validation += [group[i] for i in sorted(rng.permutation(len(group))[:take])]
    train = sorted(set(labels) - set(validation))
    source = f"validation split of the training videos ({len(validation)} videos, {val_fraction:.0%} per label, seed {seed})"
    return Split(train, sorted(validation), source)


class _Batches:
    """Balanced normal / abnormal batches of pooled, padded training videos."""

    def __init__(self, videos, labels, class_index, max_len: int, batch_size: int, seed: int):
        self.pooled = [
            torch.tensor(pool_snippets(v.features, max_len)[0]) for v in videos
        ]  # copies of memory maps
        self.abnormal = np.array([labels[v.name].abnormal for v in videos])
        self.class_index = torch.tensor(class_index)
        self.batch_size = batch_size
        self.rng = np.random.default_rng([seed, 2])
        if self.abnormal.all() or not self.abnormal.any():
            raise FeatureError("the training videos need both normal and abnormal ones")

    def next(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        half = self.batch_size // 2
        picks = []
        for pool in (np.flatnonzero(~self.abnormal), np.flatnonzero(self.abnormal)):
            picks += list(self.rng.choice(pool, size=min(half, len(pool)), replace=False))
        chosen = [self.pooled[i] for i in picks]
        lengths = torch.tensor([len(c) for c in chosen])  # (B,) unpadded lengths after pooling
        features = torch.nn.utils.rnn.pad_sequence(chosen, batch_first=True)  # (B, T, D)
        abnormal = torch.from_numpy(self.abnormal[picks])  # (B,)
        return features, lengths, abnormal, self.class_index[picks]


def train_head(
    train_videos: list[VideoFeatures],
    val_videos: list[VideoFeatures],
    labels: dict[str, VideoLabel],
    split: Split,
    *,
    config: HeadConfig,
    options: TrainOptions = TrainOptions(),
    class_prompts: ClassPrompts | None = None,
    out_dir: str | Path | None = None,
) -> TrainedHead:
    """Train, validate every `eval_every` steps, keep the best head; write the outputs when `out_dir` is set."""
    if class_prompts is not None and class_prompts.embeddings.shape != (
        config.num_classes,
        config.feature_dim,
    ):
        raise FeatureError(
            f"class prompts {class_prompts.embeddings.shape} do not match the head's "
            f"(num_classes={config.num_classes}, feature_dim={config.feature_dim})"
        )
    torch.manual_seed(options.seed)
    head = AnomalyHead(config)
    class_index = [class_prompts.index(labels[v.name]) if class_prompts else 0 for v in train_videos]
    batches = _Batches(train_videos, labels, class_index, config.max_len, options.batch_size, options.seed)
    prompts = torch.from_numpy(class_prompts.embeddings) if class_prompts is not None else None
    optimizer = torch.optim.AdamW(  # fused: one kernel for all tensors (the per-tensor loop was 1/6 of a run)
        head.parameters(), lr=options.lr, weight_decay=options.weight_decay, fused=True
    )
    history, best = [], {"val_auc": -1.0, "val_loss": float("inf"), "step": 0, "state": None}
    for step in range(1, options.steps + 1):
        row = _train_step(head, optimizer, batches.next(), prompts, options.align_weight)
        row["step"] = step
        if step % options.eval_every == 0 or step == options.steps:
            row.update(validate(head, val_videos, labels, options.selection_score))
            if (row["val_auc"], -row["val_loss"]) > (best["val_auc"], -best["val_loss"]):
                best = {
                    "val_auc": row["val_auc"],
                    "val_loss": row["val_loss"],
                    "step": step,
                    "state": _copy_state(head),
                }
        history.append(row)
    last_state = _copy_state(head)
    head.load_state_dict(best["state"])
    head.eval()
    report = _report(config, options, split, best, class_prompts)
    if out_dir is not None:
        write_training(Path(out_dir), head, last_state, report, history)
    return TrainedHead(head, report, history)


def _train_step(head, optimizer, batch, prompts, align_weight: float) -> dict:
    features, lengths, abnormal, class_index = batch
    head.train()
    out = head(features, lengths, prompts)
    losses = {"loss/mil": mil_loss(out["snippet_scores"], lengths, abnormal)}
    if "class_logits" in out:
        losses["loss/align"] = align_weight * mil_align_loss(out["class_logits"], lengths, class_index)
    loss = sum(losses.values())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return {"loss": loss.item(), **{k: v.item() for k, v in losses.items()}}


def validate(head, videos: list[VideoFeatures], labels: dict[str, VideoLabel], rule: str) -> dict:
    """Video-level ROC-AUC of the video scores (max or top-k mean snippet score) and the MIL loss, on labelled videos."""
    snippet_scores = score_videos(head, [v.features for v in videos])
    abnormal = np.array([labels[v.name].abnormal for v in videos])
    topk = np.array([video_score(s, "topk") for s in snippet_scores]).clip(1e-6, 1 - 1e-6)
    loss = -np.mean(np.where(abnormal, np.log(topk), np.log(1 - topk)))  # the training MIL BCE, whole videos
    auc = roc_auc_score(abnormal, [video_score(s, rule) for s in snippet_scores])
    return {"val_auc": float(auc), "val_loss": float(loss)}


def _copy_state(head) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in head.state_dict().items()}


def _report(config, options, split: Split, best: dict, class_prompts) -> dict:
    metric = "max snippet score" if options.selection_score == "max" else "top-k mean snippet score"
    return {
        "head": config.to_dict(),
        "train": asdict(options),
        "torch_threads": torch.get_num_threads(),  # bit-for-bit reproduction needs the same count
        "selection": {
            "on": "test" if split.on_test else "validation",
            "source": split.source,
            "metric": f"video-level ROC-AUC of the {metric}",
            "best_step": best["step"],
            "best_val_auc": best["val_auc"],
            "best_val_loss": best["val_loss"],
        },
        "videos": {"train": split.train, "validation": split.validation},
        "class_prompts": list(class_prompts.classes) if class_prompts is not None else None,
    }


def write_training(out: Path, head, last_state, report: dict, history: list[dict]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(out / HEAD_WEIGHTS))
    save_file({k: v.contiguous() for k, v in last_state.items()}, str(out / "last.safetensors"))
    (out / HEAD_CONFIG).write_text(json.dumps(report, indent=2))
    with open(out / "metrics.jsonl", "w") as handle:
        for row in history:
            handle.write(json.dumps(row) + "\n")
    plot_training(history, out / "loss.png", report["selection"]["best_step"])


def load_head(path: str | Path) -> tuple[AnomalyHead, dict]:
    """A head written by `train_head(out_dir=...)`: the folder (or its head.json / head.safetensors)."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    config_path, weights_path = folder / HEAD_CONFIG, folder / HEAD_WEIGHTS
    for needed in (config_path, weights_path):
        if not needed.is_file():
            raise FileNotFoundError(
                f"{folder}: no {needed.name}; give a folder written by `fgclip head train`"
            )
    way_out = f"train the head again (fgclip head train ... --out {folder})"
    with reading_back(config_path, "head config", way_out):
        report = json.loads(config_path.read_bytes())
        head = AnomalyHead(HeadConfig(**report["head"]))
    with reading_back(weights_path, "head weights (truncated, or not from this head.json?)", way_out):
        head.load_state_dict(load_file(str(weights_path)))
    return head.eval(), report


def plot_training(history: list[dict], out_path: Path, best_step: int) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name in ("loss", "loss/mil", "loss/align"):
        points = [(r["step"], r[name]) for r in history if name in r]
        if points and (name != "loss/mil" or any("loss/align" in r for r in history)):
            ax.plot(*zip(*points, strict=True), label=name, linewidth=1.0)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    val = [(r["step"], r["val_auc"]) for r in history if "val_auc" in r]
    twin = ax.twinx()
    twin.plot(
        *zip(*val, strict=True), color="tab:green", marker="o", markersize=3, label="validation video AUC"
    )
    twin.axvline(best_step, color="gray", linestyle="--", linewidth=1)
    twin.set_ylabel("validation video AUC")
    twin.set_ylim(0, 1.02)
    lines = ax.get_legend_handles_labels()
    twin_lines = twin.get_legend_handles_labels()
    ax.legend(lines[0] + twin_lines[0], lines[1] + twin_lines[1], loc="center right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return out_path
