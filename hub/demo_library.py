"""The demo's library, made from what installed Python packages already carry (nothing downloaded).

- five of scikit-learn's bundled datasets (iris, wine, digits, diabetes, breast cancer) as CSV
  files with a header row (the features' names, then ``target``), written from
  ``sklearn.datasets.load_*``;
- jieba's dictionary (``jieba/dict.txt``: 349,046 words with their frequencies and parts of
  speech, the model its Chinese word segmentation uses), copied as it is.

``python -m hub.demo_library OUT`` writes them below OUT at the paths of alliances/demo.yaml's
``library``, whose sizes and SHA-256s are those of scikit-learn 1.9 and jieba 0.42.1; ``make demo``
then puts them in place with ``gpu-commons library add --all`` (which checks both).
"""

from __future__ import annotations

import csv
import hashlib
import io
import shutil
import sys
from pathlib import Path

SKLEARN_DATASETS = {  # id -> (loader, keyword arguments)
    "iris": ("load_iris", {}),
    "wine": ("load_wine", {}),
    "digits": ("load_digits", {}),
    "diabetes": ("load_diabetes", {"scaled": False}),
    "breast-cancer": ("load_breast_cancer", {}),
}


def dataset_csv(loader: str, kwargs: dict) -> bytes:
    """One bundled dataset as CSV: a header row, then one row per sample (numbers as Python writes them)."""
    from sklearn import datasets

    bunch = getattr(datasets, loader)(**kwargs)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    names = [str(name) for name in bunch.feature_names]
    writer.writerow([*names, "target"])
    integral = bunch.target.dtype.kind in "iu"
    for row, target in zip(bunch.data, bunch.target):
        writer.writerow([_number(value) for value in row] + [int(target) if integral else _number(target)])
    return out.getvalue().encode("utf-8")


def _number(value) -> str:
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def write_sources(out: Path) -> dict[str, Path]:
    """Every demo entry's file below ``out`` (datasets/<id>.csv, models/jieba/dict.txt)."""
    out = Path(out)
    written = {}
    for entry_id, (loader, kwargs) in SKLEARN_DATASETS.items():
        path = out / "datasets" / f"{entry_id}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(dataset_csv(loader, kwargs))
        written[entry_id] = path
    import jieba

    path = out / "models" / "jieba" / "dict.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(jieba.__file__).parent / "dict.txt", path)
    written["jieba-dict"] = path
    return written


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m hub.demo_library OUT", file=sys.stderr)
        return 2
    for entry_id, path in write_sources(Path(argv[0])).items():
        data = path.read_bytes()
        print(f"{entry_id:<14} {len(data):>9} {hashlib.sha256(data).hexdigest()}  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
