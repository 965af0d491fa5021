"""Tests for smtrnn.data.text: bytes are kept exactly, folders read in a fixed order, token files round-trip and are
validated, every bad input is a one-line DataError naming the problem, and the split is deterministic, disjoint
and complete. All data is written to tmp_path; nothing touches the network."""

from __future__ import annotations

import json
import sys
import sysconfig
import zlib

import numpy as np
import pytest
import torch

from smtrnn.data.text import (
    Corpus,
    embedded_corpus,
    english_corpus,
    load_hf_text,
    load_text,
    load_tokens,
    split_corpus,
)
from smtrnn.errors import DataError

UNICODE = "héllo → 世界 🙂"


def doc_bytes(corpus: Corpus, i: int = 0) -> bytes:
    return bytes(corpus.documents[i].tolist())


def one_line_error(match: str, fn, *args, **kwargs) -> str:
    with pytest.raises(DataError, match=match) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------------------------------------------------------
# Bytes


def test_multibyte_utf8_round_trips_byte_for_byte(tmp_path):
    raw = UNICODE.encode("utf-8") + b"\xff\xfe latin-1 \xe9"  # invalid UTF-8 too: bytes are never decoded
    (tmp_path / "u.txt").write_bytes(raw)
    corpus = load_text(tmp_path / "u.txt")
    assert corpus.vocab_size == 256 and corpus.names == ["u.txt"]
    assert corpus.documents[0].dtype == torch.uint8
    assert doc_bytes(corpus) == raw
    assert corpus.num_tokens == len(raw)


def test_folder_is_recursive_sorted_and_skips_hidden_and_empty(tmp_path):
    files = {
        "b.txt": b"bee",
        "a/z.txt": b"zed",
        "a/b/c.txt": b"sea",
        "a.txt": b"ay",
        "empty.txt": b"",
        ".hidden.txt": b"no",
        ".git/config": b"no",
        "a/.cache/x.txt": b"no",
    }
    for rel, data in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(data)
    corpus = load_text(tmp_path)
    assert corpus.names == ["a.txt", "a/b/c.txt", "a/z.txt", "b.txt"]
    assert [doc_bytes(corpus, i) for i in range(4)] == [b"ay", b"sea", b"zed", b"bee"]


def test_empty_file_is_an_error(tmp_path):
    (tmp_path / "e.txt").write_bytes(b"")
    assert "e.txt" in one_line_error("empty", load_text, tmp_path / "e.txt")


def test_folder_without_nonempty_files_is_an_error(tmp_path):
    (tmp_path / "only_empty.txt").write_bytes(b"")
    (tmp_path / ".hidden").write_bytes(b"hidden text does not count")
    one_line_error("no non-empty files", load_text, tmp_path)


def test_missing_path_is_an_error(tmp_path):
    assert "nope.txt" in one_line_error("no such file", load_text, tmp_path / "nope.txt")


def test_binary_file_is_refused_by_name_even_inside_a_folder(tmp_path):
    (tmp_path / "ok.txt").write_bytes(b"text")
    (tmp_path / "tokens.bin").write_bytes(b"\x01\x00\x02\x00")
    message = one_line_error("looks binary", load_text, tmp_path)
    assert "tokens.bin" in message and "load_tokens" in message
    assert "tokens.bin" in one_line_error("looks binary", load_text, tmp_path / "tokens.bin")


def test_max_bytes_stops_in_sorted_order_and_truncates_the_last_document(tmp_path):
    for name, data in {"1.txt": b"aaaa", "2.txt": b"bbbb", "3.txt": b"cccc"}.items():
        (tmp_path / name).write_bytes(data)
    corpus = load_text(tmp_path, max_bytes=6)
    assert corpus.names == ["1.txt", "2.txt"]
    assert [doc_bytes(corpus, i) for i in range(2)] == [b"aaaa", b"bb"]
    assert doc_bytes(load_text(tmp_path / "3.txt", max_bytes=3)) == b"ccc"
    one_line_error("max_bytes", load_text, tmp_path, max_bytes=0)


def test_embedded_corpus_is_deterministic_python_source_within_its_cap():
    first, second = embedded_corpus(max_bytes=60_000), embedded_corpus(max_bytes=60_000)
    assert first.num_tokens == 60_000 and len(first.documents) >= 2
    assert first.names == second.names == sorted(first.names)
    assert all(torch.equal(a, b) for a, b in zip(first.documents, second.documents))
    assert all(name.endswith(".py") and "__pycache__" not in name for name in first.names)
    assert load_text(None, max_bytes=1000).names == embedded_corpus(1000).names


def test_english_corpus_is_the_documentation_topics_as_prose_one_document_per_topic():
    import pydoc_data.topics  # the reference: the same strings, by import, which the loader itself never does

    corpus = english_corpus()
    topics = pydoc_data.topics.topics
    assert corpus.names == sorted(topics) and corpus.vocab_size == 256
    assert all(doc_bytes(corpus, i) == topics[name].encode("utf-8") for i, name in enumerate(corpus.names))
    capped = english_corpus(max_bytes=5000)
    assert capped.num_tokens == 5000 and capped.names == corpus.names[: len(capped.names)]


def test_english_corpus_parses_the_file_and_never_runs_it(tmp_path, monkeypatch):
    stdlib = tmp_path / "stdlib"
    (stdlib / "pydoc_data").mkdir(parents=True)
    topics = stdlib / "pydoc_data" / "topics.py"
    monkeypatch.setattr(sysconfig, "get_paths", lambda: {"stdlib": str(stdlib)})
    topics.write_text("topics = {'b': 'second', 'a': 'first'}\n")
    assert english_corpus().names == ["a", "b"] and doc_bytes(english_corpus(), 1) == b"second"
    before = set(sys.modules)
    topics.write_text("import os\ntopics = dict(a=os.getcwd())\n")  # code, not a literal: refused, not run
    one_line_error(r"topics\.py: cannot read the documentation topics .*malformed", english_corpus)
    topics.write_text("topics = {'a': 1}\n")
    one_line_error("not a dict of strings", english_corpus)
    topics.unlink()
    one_line_error("cannot read the documentation topics", english_corpus)
    assert set(sys.modules) == before


# ---------------------------------------------------------------------------------------------------------------
# Token files


def test_npy_round_trip(tmp_path):
    ids = np.array([5, 0, 999, 3], dtype=np.int32)
    np.save(tmp_path / "t.npy", ids)
    corpus = load_tokens(tmp_path / "t.npy", vocab_size=1000)
    assert corpus.names == ["t.npy"] and corpus.vocab_size == 1000
    assert corpus.documents[0].tolist() == ids.tolist()


def test_bin_uint16_with_sidecar_round_trips_and_windows_convert_to_long(tmp_path):
    ids = np.array([1, 60000, 7, 65535], dtype=np.uint16)
    ids.tofile(tmp_path / "train.bin")
    (tmp_path / "train.bin.json").write_text(json.dumps({"dtype": "uint16", "vocab_size": 65536}))
    corpus = load_tokens(tmp_path / "train.bin")
    assert corpus.vocab_size == 65536
    assert corpus.documents[0].dtype == torch.uint16
    assert corpus.documents[0][1:4].long().tolist() == [60000, 7, 65535]


def test_bin_arguments_override_the_sidecar(tmp_path):
    ids = np.array([3, 70000, 2], dtype=np.uint32)
    ids.tofile(tmp_path / "t.bin")
    (tmp_path / "t.bin.json").write_text(json.dumps({"dtype": "uint16", "vocab_size": 10}))
    corpus = load_tokens(tmp_path / "t.bin", dtype="uint32", vocab_size=100_000)
    assert corpus.vocab_size == 100_000
    assert corpus.documents[0].long().tolist() == [3, 70000, 2]


def test_bin_without_dtype_is_an_error(tmp_path):
    np.array([1, 2], dtype=np.uint16).tofile(tmp_path / "t.bin")
    assert "t.bin" in one_line_error("needs a dtype", load_tokens, tmp_path / "t.bin", vocab_size=10)


def test_id_outside_vocab_is_an_error_naming_the_id_and_position(tmp_path):
    np.array([1, 2, 50, 60], dtype=np.uint16).tofile(tmp_path / "t.bin")
    message = one_line_error("outside the vocabulary", load_tokens, tmp_path / "t.bin", "uint16", 50)
    assert "token id 50 at position 2" in message and "[0, 50)" in message
    np.save(tmp_path / "neg.npy", np.array([0, -4], dtype=np.int64))
    assert "token id -4 at position 1" in one_line_error("outside", load_tokens, tmp_path / "neg.npy", None, 9)


def test_bin_size_not_a_multiple_of_dtype_is_an_error(tmp_path):
    (tmp_path / "t.bin").write_bytes(b"\x01\x00\x02")
    one_line_error("not a multiple of 2", load_tokens, tmp_path / "t.bin", "uint16", 10)


def test_two_dimensional_npy_is_an_error(tmp_path):
    np.save(tmp_path / "t.npy", np.zeros((2, 3), dtype=np.int64))
    one_line_error(r"must be 1-D, got shape \(2, 3\)", load_tokens, tmp_path / "t.npy", vocab_size=5)


def test_non_uint8_tokens_need_a_vocab_size_and_uint8_defaults_to_bytes(tmp_path):
    np.save(tmp_path / "t.npy", np.array([1, 2], dtype=np.int64))
    one_line_error("vocab_size is required", load_tokens, tmp_path / "t.npy")
    np.save(tmp_path / "b.npy", np.array([255, 0], dtype=np.uint8))
    assert load_tokens(tmp_path / "b.npy").vocab_size == 256


# ---------------------------------------------------------------------------------------------------------------
# Split


def named_corpus(n: int) -> Corpus:
    return Corpus([torch.full((i + 1,), i, dtype=torch.uint8) for i in range(n)], [f"f{i}.txt" for i in range(n)], 256)


def test_split_is_deterministic_disjoint_complete_and_follows_the_hash():
    corpus = named_corpus(60)
    train, valid = split_corpus(corpus, 0.25)
    again = split_corpus(corpus, 0.25)
    assert (train.names, valid.names) == (again[0].names, again[1].names)
    assert set(train.names).isdisjoint(valid.names)
    assert sorted(train.names + valid.names) == sorted(corpus.names)
    assert train.num_tokens + valid.num_tokens == corpus.num_tokens
    assert all(zlib.crc32(n.encode()) % 10_000 < 2500 for n in valid.names)
    assert 0 < len(valid.names) < len(corpus.names)
    # Adding documents never moves an existing one between sides.
    bigger_valid = split_corpus(named_corpus(80), 0.25)[1].names
    assert set(valid.names) == set(bigger_valid) & set(corpus.names)


def test_split_keeps_both_sides_nonempty():
    corpus = named_corpus(2)
    for fraction in (0.0001, 0.9999):
        train, valid = split_corpus(corpus, fraction)
        assert len(train.names) == len(valid.names) == 1
    one_line_error("valid_fraction", split_corpus, corpus, 1.0)
    one_line_error("valid_fraction", split_corpus, corpus, 0.0)


def test_single_document_split_cuts_its_tail():
    corpus = Corpus([torch.arange(20, dtype=torch.uint8)], ["only.txt"], 256)
    train, valid = split_corpus(corpus, 0.1)
    assert train.names == ["only.txt#train"] and valid.names == ["only.txt#valid"]
    assert valid.documents[0].tolist() == [18, 19]
    assert torch.equal(torch.cat([train.documents[0], valid.documents[0]]), corpus.documents[0])
    assert split_corpus(corpus, 0.001)[1].num_tokens == 1  # at least one validation token


# ---------------------------------------------------------------------------------------------------------------
# Hugging Face datasets (local data only)


def test_hf_loader_reads_save_to_disk_folder(tmp_path):
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_dict({"text": [UNICODE, "", "second"], "id": [0, 1, 2]}).save_to_disk(tmp_path / "ds")
    corpus = load_hf_text(str(tmp_path / "ds"))
    assert corpus.names == ["train#0", "train#2"]  # the empty row is skipped; names keep the row index
    assert doc_bytes(corpus, 0) == UNICODE.encode("utf-8") and doc_bytes(corpus, 1) == b"second"
    assert load_hf_text(str(tmp_path / "ds"), max_documents=1).names == ["train#0"]


def test_hf_loader_reads_local_json_lines_through_load_kwargs(tmp_path):
    pytest.importorskip("datasets")
    lines = [json.dumps({"body": text}) for text in ("one", UNICODE)]
    (tmp_path / "d.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    corpus = load_hf_text(
        "json", column="body", data_files=str(tmp_path / "d.jsonl"), cache_dir=str(tmp_path / "cache")
    )
    assert [doc_bytes(corpus, i) for i in range(2)] == [b"one", UNICODE.encode("utf-8")]


def test_a_hub_name_without_a_network_is_one_line_after_one_check(monkeypatch):
    pytest.importorskip("datasets")
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("smtrnn.data.text.hub_reachable", lambda: False)
    monkeypatch.setattr("datasets.load_dataset", lambda *a, **k: pytest.fail("went to the hub"))
    message = one_line_error("the Hugging Face hub is not reachable", load_hf_text, "someone/some-dataset")
    assert "save_to_disk" in message and "HF_DATASETS_OFFLINE=1" in message


def test_hf_missing_column_lists_the_columns(tmp_path):
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_dict({"content": ["a"], "label": [1]}).save_to_disk(tmp_path / "ds")
    message = one_line_error("no column 'text'", load_hf_text, str(tmp_path / "ds"))
    assert "content" in message and "label" in message
