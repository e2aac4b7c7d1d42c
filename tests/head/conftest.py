import pytest

from fgclip.head.features import read_features, read_labels
from fgclip.head.synthetic import write_planted_features


@pytest.fixture(scope="package")
def planted(tmp_path_factory):
    """Synthetic features in the export layout: a planted event direction in 3-6 snippets of abnormal videos."""
    paths = write_planted_features(tmp_path_factory.mktemp("planted"), seed=0, num_train=80, num_test=30,
                                   snippets=(12, 30), strength=1.2)  # fmt: skip
    return paths, read_features(paths.features), read_labels(paths.train_list)
