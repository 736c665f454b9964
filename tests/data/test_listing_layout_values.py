"""The list-file readers, the layout search and the seeded per-class split on hand-made files
in ``tmp_path``: exact fields, line numbers, messages and split members."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from lit_robust.data.folder import IMAGENET_MEAN, IMAGENET_STD
from lit_robust.data.images import DataFileError
from lit_robust.data.layouts import DatasetLayout, not_found_message
from lit_robust.data.listings import (
    entry_error,
    few,
    integer,
    load_json,
    load_mat,
    lookup,
    numbered_lines,
    split_fields,
    table_rows,
)
from lit_robust.data.transfer import (
    TransferDataModule,
    image_files,
    per_class_split,
    split_from_rows,
)

TAIL = "; fix the entry or replace the file with the dataset's original"


def test_entry_error_positions():
    path = Path("lists/a.txt")
    assert str(entry_error(path, "a number", "x y", 7)) == (
        "lists/a.txt, line 7: expected a number, got 'x y'" + TAIL)
    assert str(entry_error(path, "a number", 3, "train[3]")) == (
        "lists/a.txt, train[3]: expected a number, got 3" + TAIL)
    assert str(entry_error(path, "a number", "x", None)) == (
        "lists/a.txt: expected a number, got 'x'" + TAIL)
    bare = "lists/a.txt: expected a number, got 'x'" + TAIL
    assert str(entry_error(path, "a number", "x")) == bare
    assert str(entry_error(path, "a number", "x", "")) == bare
    assert isinstance(entry_error(path, "a", "b", 1), DataFileError)


def test_few_shows_eight_then_counts():
    assert few(range(8)) == "0, 1, 2, 3, 4, 5, 6, 7"
    assert few(range(9)) == "0, 1, 2, 3, 4, 5, 6, 7, ... (9 in all)"
    assert few(["a", "b", "c"], limit=2) == "a, b, ... (3 in all)"
    assert few([]) == ""


def test_numbered_lines(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("# header\n  a 1  \n\n   \n#b 2\n c 3\n  # indented\n", encoding="utf-8")
    assert numbered_lines(path) == [(1, "# header"), (2, "a 1"), (5, "#b 2"), (6, "c 3"),
                                    (7, "# indented")]
    assert numbered_lines(path, comment="#") == [(2, "a 1"), (6, "c 3"), (7, "# indented")]
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00abc")
    with pytest.raises(DataFileError) as error:
        numbered_lines(binary)
    message = str(error.value)
    assert message.startswith(f"{binary} is not a text file (")
    assert message.endswith("); replace it with the dataset's original")
    assert "codec can't decode" in message


def test_split_fields(tmp_path):
    path = tmp_path / "l.txt"
    assert split_fields(path, 1, "a  b\tc d", 2, "x") == ["a", "b"]
    assert split_fields(path, 1, "a b c d", 2, "x", separator=" ") == ["a", "b c d"]
    assert split_fields(path, 1, "id Boeing 707 ", 2, "x", separator=" ") == ["id", "Boeing 707"]
    assert split_fields(path, 1, "a,b,c", 3, "x", separator=",") == ["a", "b", "c"]
    with pytest.raises(DataFileError) as error:
        split_fields(path, 4, "lonely", 2, "two fields")
    assert str(error.value) == f"{path}, line 4: expected two fields, got 'lonely'" + TAIL
    with pytest.raises(DataFileError, match="line 5: expected two fields, got 'a, '"):
        split_fields(path, 5, "a, ", 2, "two fields", separator=",")
    with pytest.raises(DataFileError, match="line 6: expected"):
        split_fields(path, 6, " ,b", 2, "two fields", separator=",")


def test_integer_and_lookup(tmp_path):
    path = tmp_path / "l.txt"
    assert integer(path, "-12", "n", "line", 3) == -12
    with pytest.raises(DataFileError) as error:
        integer(path, "1.5", "an integer", "a 1.5", 3)
    assert str(error.value) == f"{path}, line 3: expected an integer, got 'a 1.5'" + TAIL
    assert error.value.__cause__ is None and error.value.__suppress_context__
    assert lookup({"a": 4}, "a", path, "x", "e", 1) == 4
    with pytest.raises(DataFileError) as error:
        lookup({"a": 4}, "b", path, "a known name", "b 1", "train[0]")
    assert str(error.value) == f"{path}, train[0]: expected a known name, got 'b 1'" + TAIL
    assert error.value.__suppress_context__


def test_table_rows(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_text(" url \t path \tclass\n\nu1\t p1 \t c1\nu2\tp2\tc2\textra\n", encoding="utf-8")
    rows = table_rows(path, ("path", "class"))
    assert rows == [(3, "u1\t p1 \t c1", {"url": "u1", "path": "p1", "class": "c1"}),
                    (4, "u2\tp2\tc2\textra", {"url": "u2", "path": "p2", "class": "c2"})]
    csv = tmp_path / "t.csv"
    csv.write_text("a,b\n1,2\n", encoding="utf-8")
    assert table_rows(csv, ("b",), delimiter=",") == [(2, "1,2", {"a": "1", "b": "2"})]
    empty = tmp_path / "empty.tsv"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataFileError) as error:
        table_rows(empty, ("path", "class"))
    assert str(error.value) == (f"{empty}, line 1: expected a header naming the columns path, "
                                "class, got ''" + TAIL)
    header = tmp_path / "header.tsv"
    header.write_text("\n url\tpath\n1\t2\n", encoding="utf-8")
    with pytest.raises(DataFileError) as error:
        table_rows(header, ("path", "class", "id"))
    assert str(error.value) == (f"{header}, line 2: expected a '\\t'-separated header with the "
                                "columns path, class, id (class, id missing), got 'url\\tpath'"
                                + TAIL)
    short = tmp_path / "short.tsv"
    short.write_text("path\tclass\np1\tc1\np2\t \n", encoding="utf-8")
    with pytest.raises(DataFileError) as error:
        table_rows(short, ("path", "class"))
    assert str(error.value) == (f"{short}, line 3: expected a value for each of path, class, "
                                "got 'p2'" + TAIL)
    missing = tmp_path / "missing.tsv"
    missing.write_text("path\tclass\np1\n", encoding="utf-8")
    with pytest.raises(DataFileError, match="line 2: expected a value for each of path, class"):
        table_rows(missing, ("path", "class"))


def test_load_json(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('{"a": [1, 2]}', encoding="utf-8")
    assert load_json(path) == {"a": [1, 2]}
    path.write_text('{\n  "a": [1, 2,\n}', encoding="utf-8")
    with pytest.raises(DataFileError) as error:
        load_json(path)
    assert str(error.value).startswith(f"{path}, line 3, column 1: not valid JSON (")
    assert str(error.value).endswith("); replace it with the dataset's original")
    path.write_bytes(b"\xff\xfe\x00\x01")
    with pytest.raises(DataFileError) as error:
        load_json(path)
    assert str(error.value).startswith(f"{path}: not valid JSON (")


def test_load_mat(tmp_path):
    path = tmp_path / "a.mat"
    scipy.io.savemat(path, {"labels": np.array([[3, 1, 2]]), "other": np.array([1])})
    content = load_mat(path, ("labels",), "labels")
    assert list(content) == ["labels"] and content["labels"].tolist() == [3, 1, 2]
    with pytest.raises(DataFileError) as error:
        load_mat(path, ("labels", "trnid", "tstid"), "the split ids")
    assert str(error.value) == (f"{path} has no variable trnid, tstid (it holds labels, other); "
                                "expected the split ids")
    scipy.io.savemat(path, {})
    with pytest.raises(DataFileError) as error:
        load_mat(path, ("labels",), "labels")
    assert str(error.value) == f"{path} has no variable labels (it holds none); expected labels"
    broken = tmp_path / "broken.mat"
    broken.write_bytes(b"not a matlab file at all" * 10)
    with pytest.raises(DataFileError) as error:
        load_mat(broken, ("labels",), "the labels")
    assert str(error.value).startswith(f"{broken} is not a readable MATLAB file (")
    assert str(error.value).endswith("); expected the labels")
    with pytest.raises(DataFileError, match="is not a readable MATLAB file"):
        load_mat(tmp_path / "absent.mat", ("labels",), "the labels")


# ---- layouts ----------------------------------------------------------------------------------

def _layout(markers=("data/", "list.txt")):
    return DatasetLayout("a test layout", "{data/, list.txt}", ("one", "two/deeper"), markers,
                         read=lambda folder, split: None)


def test_layout_candidates_and_find(tmp_path):
    layout = _layout()
    assert layout.candidates(tmp_path) == [tmp_path / "one", tmp_path / "two/deeper", tmp_path]
    assert layout.official_val is False
    assert layout.find(tmp_path) is None
    (tmp_path / "data").mkdir()
    (tmp_path / "list.txt").write_text("x")
    assert layout.find(tmp_path) == tmp_path
    deeper = tmp_path / "two" / "deeper"
    (deeper / "data").mkdir(parents=True)
    (deeper / "list.txt").mkdir()  # a folder where a file is expected
    assert layout.find(tmp_path) == tmp_path
    (deeper / "list.txt").rmdir()
    (deeper / "list.txt").write_text("x")
    assert layout.find(tmp_path) == deeper
    one = tmp_path / "one"
    one.mkdir()
    (one / "data").write_text("a file where a folder is expected")
    (one / "list.txt").write_text("x")
    assert layout.find(tmp_path) == deeper
    (one / "data").unlink()
    (one / "data").mkdir()
    assert layout.find(tmp_path) == one


def test_not_found_message(tmp_path):
    other = DatasetLayout("another layout", "{x.mat}", (), ("x.mat",), read=lambda f, s: None)
    message = not_found_message("Toy", tmp_path, (_layout(), other), "Get it from the site.")
    assert message == "\n".join([
        f"Toy not found under root '{tmp_path}'. Looked for:",
        f"  - a test layout, in one of: {tmp_path / 'one'}, {tmp_path / 'two/deeper'}, "
        f"{tmp_path}",
        "      expected inside it: {data/, list.txt}",
        f"  - another layout, in one of: {tmp_path}",
        "      expected inside it: {x.mat}",
        "Pass root=<folder> (default: the LIT_ROBUST_DATA environment variable, else ./data). "
        "Get it from the site.",
    ])


# ---- shared transfer helpers ------------------------------------------------------------------

def test_transfer_protocol_defaults():
    assert TransferDataModule.mean == IMAGENET_MEAN and TransferDataModule.std == IMAGENET_STD
    assert TransferDataModule.default_image_size == 224
    assert TransferDataModule.default_resize == "resize_center_crop"


def test_split_from_rows(tmp_path):
    split = split_from_rows(iter([(tmp_path / "a.jpg", 2), ("b.png", 0)]))
    assert split.labels.dtype == torch.int64 and split.labels.tolist() == [2, 0]
    assert split.files == [str(tmp_path / "a.jpg"), "b.png"] and split.images is None
    with pytest.raises(FileNotFoundError) as error:
        split_from_rows([])
    assert str(error.value) == "the split lists no images"


def test_image_files_lists_images_directly_inside(tmp_path):
    for name in ("b.JPG", "a.png", "c.jpeg", "notes.txt", "d.webp", "jpg"):
        (tmp_path / name).write_text("x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "e.jpg").write_text("x")
    assert image_files(tmp_path) == ["a.png", "b.JPG", "c.jpeg", "d.webp"]


def test_per_class_split_members(tmp_path):
    rows = [(f"{c}_{i}.jpg", c) for c in (3, 1) for i in range(4)] + [("1_x.jpg", 1)]
    labels = np.array([label for _, label in rows])
    train = per_class_split(rows, 2, seed=6, split="train", dataset="Toy")
    test = per_class_split(rows, 2, seed=6, split="test", dataset="Toy")
    expected_train = []
    for label in (1, 3):
        order = np.random.default_rng([6, label]).permutation(np.flatnonzero(labels == label))
        expected_train.extend(order[:2].tolist())
    assert train == [rows[i] for i in sorted(expected_train)]
    assert test == [rows[i] for i in range(len(rows)) if i not in expected_train]
    assert per_class_split(rows, 2, seed=6, split="val", dataset="Toy") == test
    assert per_class_split(rows, 3, seed=6, split="train", dataset="Toy") != train
    with pytest.raises(ValueError) as error:
        per_class_split(rows, 4, seed=0, split="train", dataset="Toy")
    assert str(error.value) == ("Toy: class 3 has 4 images, but the split takes "
                                "train_per_class=4 of them for training and needs at least one "
                                "more for testing; lower train_per_class")
    assert len(per_class_split(rows[4:], 4, seed=0, split="test", dataset="Toy")) == 1


def test_load_json_keeps_order(tmp_path):
    path = tmp_path / "b.json"
    path.write_text(json.dumps({"z": 1, "a": 2}), encoding="utf-8")
    assert list(load_json(path)) == ["z", "a"]


def test_table_rows_refuses_a_quoted_value_spanning_lines(tmp_path):
    """CSV quoting joins two text lines into one row; the rows would then be paired with the
    wrong line numbers, so the reader refuses the file instead."""
    path = tmp_path / "quoted.tsv"
    path.write_text('path\tclass\n"p1\np1b"\tc1\np2\tc2\n', encoding="utf-8")
    with pytest.raises(ValueError):
        table_rows(path, ("path", "class"))
