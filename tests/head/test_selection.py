"""Model selection never touches the test list unless asked for explicitly."""

import pytest

from fgclip.cli import main
from fgclip.head.features import read_labels
from fgclip.head.train import SelectionOnTestRefused, split_training_videos


def test_validation_is_a_stratified_split_of_the_training_videos(planted):
    _, _, labels = planted
    split = split_training_videos(labels, val_fraction=0.25, seed=0)
    assert not set(split.train) & set(split.validation) and set(split.train) | set(split.validation) == set(
        labels
    )
    abnormal = [labels[n].abnormal for n in split.validation]
    assert abnormal.count(True) == abnormal.count(False) == 10  # 25% of 40 of each label
    assert not split.on_test and "validation split of the training videos" in split.source


def test_a_test_list_without_the_flag_is_refused(planted):
    paths, _, labels = planted
    with pytest.raises(SelectionOnTestRefused, match="--select-on-test"):
        split_training_videos(labels, val_fraction=0.2, seed=0, test_labels=read_labels(paths.test_list))
    split = split_training_videos(labels, val_fraction=0.2, seed=0, test_labels=read_labels(paths.test_list),
                                  select_on_test=True)  # fmt: skip
    assert (
        split.on_test
        and split.train == sorted(labels)
        and split.validation == sorted(read_labels(paths.test_list))
    )


def test_cli_refuses_and_then_reports_test_selection(planted, tmp_path, capsys):
    paths, _, _ = planted
    base = ["head", "train", str(paths.features), "--labels", str(paths.train_list), "--out", str(tmp_path / "h"),
            "--steps", "2", "--eval-every", "1", "--batch-size", "4", "--hidden-dim", "16"]  # fmt: skip
    assert main([*base, "--test-list", str(paths.test_list)]) == 1
    assert "fgclip head train: a test list was given for model selection: refused" in capsys.readouterr().err
    assert main([*base, "--select-on-test"]) == 2  # the flag without the list
    assert main([*base, "--select-on-test", "--test-list", str(paths.test_list)]) == 0
    assert "MODEL SELECTED ON THE TEST SET" in capsys.readouterr().out
    argv = ["head", "eval", str(tmp_path / "h"), str(paths.features), "--temporal-annotations",
            str(paths.annotations), "--test-list", str(paths.test_list), "--timelines", "0"]  # fmt: skip
    assert main(argv) == 0
    assert "THIS HEAD WAS SELECTED ON THE TEST SET" in capsys.readouterr().out


def test_training_and_test_lists_must_not_share_videos(planted):
    _, _, labels = planted
    with pytest.raises(Exception, match="in both the training and the test list"):
        split_training_videos(labels, val_fraction=0.2, seed=0, test_labels=labels, select_on_test=True)
