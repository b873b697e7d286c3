"""kizuna datasets: the LeRobotDataset v3 layout plus per-episode provenance (Contract 4).

``DatasetWriter`` writes episodes (SIGKILL-safe, resumable), ``DatasetReader`` reads them back,
``check_dataset`` verifies a dataset file by file, ``merge_datasets`` combines sim and real ones.
"""

from kizuna.dataset.check import CheckReport, check_dataset
from kizuna.dataset.merge import merge_datasets
from kizuna.dataset.meta import DatasetError
from kizuna.dataset.provenance import Provenance
from kizuna.dataset.reader import DatasetReader, Episode
from kizuna.dataset.writer import DatasetWriter

__all__ = [
    "CheckReport",
    "DatasetError",
    "DatasetReader",
    "DatasetWriter",
    "Episode",
    "Provenance",
    "check_dataset",
    "merge_datasets",
]
