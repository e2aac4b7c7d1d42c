"""`fgclip head train / eval / compare / prompts`: a weakly supervised anomaly head on exported features.

    fgclip head train FEATURES --labels Anomaly_Train.txt --out head_run [--seed 0] [--val-fraction 0.2]
    fgclip head eval head_run FEATURES --temporal-annotations ANNOTATIONS --test-list Anomaly_Test.txt
    fgclip head compare FEATURES_A FEATURES_B --labels ... --test-list ... --temporal-annotations ...
    fgclip head prompts CHECKPOINT --prompts ucf-crime --out prompts.npz   (for --class-prompts)

FEATURES is a folder written by `fgclip export-features` (either layout; it may hold the training and the
test videos, the lists say which is which), or a list CSV `path,label` in VadCLIP's form (ucf_CLIP_rgb.csv,
ucf_CLIP_rgbtest.csv), which names the videos, their crops and labels itself:

    fgclip head train ucf_CLIP_rgb.csv --feature-root UCFClipFeatures --crop 5 --out head_run
    fgclip head eval head_run ucf_CLIP_rgbtest.csv --feature-root UCFClipFeatures \
        --temporal-annotations Temporal_Anomaly_Annotation_for_Testing_Videos.txt

Training uses every crop of the training videos (`--train-crops`), validation and test one (`--crop`).
Heavy imports happen inside the commands, so `fgclip --help` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path

from fgclip.commands._errors import UsageError, check_writable


def register(subparsers) -> None:
    head = subparsers.add_parser("head", help="weakly supervised anomaly head on exported snippet features")
    verbs = head.add_subparsers(title="head commands")
    _train_parser(verbs)
    _eval_parser(verbs)
    _compare_parser(verbs)
    _prompts_parser(verbs)


def _train_parser(verbs) -> None:
    train = verbs.add_parser(
        "train", help="train the head from video-level labels (validation split from them)"
    )
    train.add_argument(
        "features", help="folder of `fgclip export-features`, or a VadCLIP list CSV path,label"
    )
    train.add_argument("--labels", help="training list: Class/Name.mp4 lines, or CSV/JSON video,label[,class] "
                       "(default: a list CSV's own labels)")  # fmt: skip
    train.add_argument(
        "--out", required=True, help="output folder (head.safetensors, head.json, metrics.jsonl, loss.png)"
    )
    train.add_argument(
        "--class-prompts", help="NPZ of class prompt embeddings (`fgclip head prompts`): MIL-align branch"
    )
    train.add_argument(
        "--select-on-test",
        action="store_true",
        help="select the checkpoint on --test-list instead of a validation split (reported as such)",
    )
    train.add_argument(
        "--test-list", help="with --select-on-test only: the test videos (Class/Name.mp4 lines)"
    )
    train.add_argument("--test-features", help="with --select-on-test: their features (default: FEATURES)")
    _recipe_arguments(train)
    _crop_arguments(train, training=True)
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(run=run_train)


def _eval_parser(verbs) -> None:
    evaluate = verbs.add_parser("eval", help="frame-level AUC / AP of a trained head on test features")
    evaluate.add_argument("head", help="folder written by `fgclip head train`")
    evaluate.add_argument("features", help="folder of `fgclip export-features`, or a VadCLIP test list CSV")
    _crop_arguments(evaluate, training=False)
    _test_arguments(evaluate)
    evaluate.add_argument("--out", help="output folder (default: HEAD/eval)")
    evaluate.add_argument(
        "--timelines", type=int, default=6, help="timeline PNGs of the worst videos (default 6)"
    )
    evaluate.set_defaults(run=run_eval)


def _compare_parser(verbs) -> None:
    compare = verbs.add_parser("compare", help="the same head recipe and seeds on two backbones' features")
    compare.add_argument("features_a", help="training features of backbone A")
    compare.add_argument("features_b", help="training features of backbone B")
    compare.add_argument("--labels", help="training list (as for head train; default: a list CSV's labels)")
    compare.add_argument("--test-features", nargs=2, metavar=("TEST_A", "TEST_B"),
                         help="test features of A and B (default: FEATURES_A FEATURES_B)")  # fmt: skip
    compare.add_argument("--names", nargs=2, default=("A", "B"), metavar=("NAME_A", "NAME_B"))
    compare.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="at least 3 (default 0 1 2)")
    compare.add_argument("--out", help="write compare.json here")
    _test_arguments(compare)
    _recipe_arguments(compare)
    _crop_arguments(compare, training=True)
    compare.set_defaults(run=run_compare)


def _prompts_parser(verbs) -> None:
    prompts = verbs.add_parser("prompts", help="class prompt embeddings of a checkpoint, for --class-prompts")
    prompts.add_argument(
        "checkpoint", help="run/model or run/checkpoint-N (the backbone that exported the features)"
    )
    prompts.add_argument("--prompts", required=True, help="prompt set: ucf-crime, msad or a JSON file")
    prompts.add_argument("--out", required=True, help="NPZ to write (classes, embeddings)")
    prompts.add_argument("--config", help="run config (default: the checkpoint's fgclip_config.yaml)")
    prompts.add_argument("--device", help="cpu, cuda ... (default: cuda when available)")
    prompts.set_defaults(run=run_prompts)


def _test_arguments(parser) -> None:
    parser.add_argument("--temporal-annotations", required=True,
                        help="UCF-Crime annotation file, or JSON {video: {class, segments}} (MSAD; docs/anomaly_head.md)")  # fmt: skip
    parser.add_argument("--test-list", help="test videos, Class/Name.mp4 per line (Anomaly_Test.txt; "
                        "default: a test list CSV's own labels)")  # fmt: skip


def _crop_arguments(parser, training: bool) -> None:
    parser.add_argument("--feature-root", help="for a list CSV: read Class/Name__k.npy under this folder "
                        "instead of the CSV's paths (VadCLIP's carry its authors' absolute paths)")  # fmt: skip
    parser.add_argument("--crop", type=int, help="the crop to validate / test on (default: the export's "
                        "test crop, or the only crop a list holds)")  # fmt: skip
    if training:
        parser.add_argument("--train-crops", default="all",
                            help="crops to train on: all (default, as VadCLIP) or a comma list, e.g. 0,5")  # fmt: skip


def _recipe_arguments(parser) -> None:
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps (default 300)")
    parser.add_argument(
        "--batch-size", type=int, default=16, help="videos per step, half normal (default 16)"
    )
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eval-every", type=int, default=25, help="validate every N steps (default 25)")
    parser.add_argument(
        "--val-fraction", type=float, default=0.2, help="of each label's training videos (default 0.2)"
    )
    parser.add_argument("--selection-score", choices=("max", "topk"), default="max",
                        help="video score for the validation AUC: max or top-k mean snippet score (default max)")  # fmt: skip
    parser.add_argument("--max-len", type=int, default=256, help="training length in snippets (default 256)")
    parser.add_argument("--hidden-dim", type=int, default=128)
    parser.add_argument(
        "--window", type=int, default=8, help="local attention window, +-snippets (default 8)"
    )


def _options(args, seed: int):
    from fgclip.head.train import TrainOptions

    return TrainOptions(steps=args.steps, batch_size=args.batch_size, lr=args.lr, eval_every=args.eval_every,
                        seed=seed, val_fraction=args.val_fraction, selection_score=args.selection_score)  # fmt: skip


def _head_config(args) -> dict:
    return {"max_len": args.max_len, "hidden_dim": args.hidden_dim, "window": args.window}


def run_train(args, _=None) -> int:
    if args.select_on_test and not args.test_list and not args.test_features:
        raise UsageError("--select-on-test needs --test-list (the videos to select on)")
    if args.test_features and not args.select_on_test:
        raise UsageError("--test-features is only used with --select-on-test")
    return _train(args)


def _train(args) -> int:
    from fgclip.head.features import labels_for, parse_crops, read_features
    from fgclip.head.model import HeadConfig
    from fgclip.head.train import ClassPrompts, split_training_videos, train_head

    check_writable(args.out, "--out")
    features = read_features(args.features, args.crop, args.feature_root)
    labels = labels_for(features, args.labels, "--labels")
    val_features = (
        read_features(args.test_features, args.crop, args.feature_root) if args.test_features else features
    )
    test_labels = (
        labels_for(val_features, args.test_list, "--test-list")
        if args.select_on_test or args.test_list
        else None
    )
    split = split_training_videos(labels, val_fraction=args.val_fraction, seed=args.seed,
                                  test_labels=test_labels, select_on_test=args.select_on_test)  # fmt: skip
    prompts = ClassPrompts.from_npz(args.class_prompts) if args.class_prompts else None
    config = HeadConfig(
        feature_dim=features.dim, num_classes=len(prompts.classes) if prompts else 0, **_head_config(args)
    )
    train_videos = features.training_views(
        split.train, f"the training list {args.labels or args.features}", parse_crops(args.train_crops)
    )
    print(f"[fgclip] training on {len(train_videos)} views of {len(split.train)} videos; "
          f"validating on crop {val_features.crop}")  # fmt: skip
    val_videos = val_features.select(split.validation, "the selection videos")
    all_labels = {**labels, **(test_labels or {})}
    trained = train_head(train_videos, val_videos, all_labels, split, config=config,
                         options=_options(args, args.seed), class_prompts=prompts, out_dir=args.out)  # fmt: skip
    selection = trained.report["selection"]
    if split.on_test:
        print(
            "[fgclip] WARNING: MODEL SELECTED ON THE TEST SET (--select-on-test); its test numbers are optimistic"
        )
    print(f"[fgclip] selection: {selection['source']}; {selection['metric']} = {selection['best_val_auc']:.4f} "
          f"at step {selection['best_step']}")  # fmt: skip
    print(f"[fgclip] head: {Path(args.out) / 'head.safetensors'}; curves: {Path(args.out) / 'loss.png'}")
    return 0


def run_eval(args, _=None) -> int:
    return _eval(args)


def _eval(args) -> int:
    from fgclip.head.features import labels_for, read_features
    from fgclip.head.frame_metrics import evaluate_head, format_evaluation, read_ground_truth
    from fgclip.head.train import load_head

    head, trained = load_head(args.head)
    out = check_writable(Path(args.out) if args.out else Path(args.head) / "eval", "--out")
    features = read_features(args.features, args.crop, args.feature_root)
    evaluation = evaluate_head(head, features, labels_for(features, args.test_list, "--test-list"),
                               read_ground_truth(args.temporal_annotations), out_dir=out, timelines=args.timelines)  # fmt: skip
    selection = trained["selection"]
    evaluation.report["selection"] = selection
    (out / "head_eval.json").write_text(json.dumps(evaluation.report, indent=2))
    if selection["on"] == "test":
        print("[fgclip] WARNING: THIS HEAD WAS SELECTED ON THE TEST SET (--select-on-test)")
    print(f"[fgclip] head selected on: {selection['source']}")
    print(format_evaluation(evaluation.report))
    print(f"[fgclip] report: {out / 'head_eval.json'}; timelines: {out / 'timelines'}")
    return 0


def run_compare(args, _=None) -> int:
    if len(args.seeds) < 3:
        raise UsageError(
            f"--seeds needs at least 3 seeds for mean ± sd and paired differences, got {args.seeds}"
        )
    return _compare(args)


def _compare(args) -> int:
    from fgclip.head.compare import format_comparison, head_comparison_for_demo
    from fgclip.head.features import parse_crops

    if args.out:
        check_writable(args.out, "--out")
    a, b = args.names
    tests = args.test_features or (args.features_a, args.features_b)
    result = head_comparison_for_demo(
        {a: args.features_a, b: args.features_b}, {a: tests[0], b: tests[1]}, args.labels, args.test_list,
        args.temporal_annotations, seeds=tuple(args.seeds), head_config=_head_config(args),
        options=_options(args, args.seeds[0]), crop=args.crop, train_crops=parse_crops(args.train_crops),
        feature_root=args.feature_root,
    )  # fmt: skip
    print(format_comparison(result))
    if args.out:
        (Path(args.out) / "compare.json").write_text(json.dumps(result, indent=2))
        print(f"[fgclip] {Path(args.out) / 'compare.json'}")
    return 0


def run_prompts(args, _=None) -> int:
    import numpy as np

    from fgclip.builders import load_run, prompt_bank
    from fgclip.evaluation.zeroshot import load_prompt_set

    run = load_run(args.checkpoint, config=args.config, device=args.device)
    check_writable(Path(args.out).parent, "--out")
    bank = prompt_bank(run.config, run.model, run.tokenizer, load_prompt_set(args.prompts), head="clip")
    # one embedding per class: the prompt ensemble (normalised mean of the class's prompts), Normal first
    np.savez(args.out, classes=np.array(bank.classes), embeddings=bank.class_embeds().cpu().numpy())
    print(f"[fgclip] {len(bank.classes)} class embeddings ({', '.join(bank.classes)}) -> {args.out}")
    return 0
