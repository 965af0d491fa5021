"""Properties of the task generators and the data loaders on arbitrary input (hypothesis): a batch is a function of
its seed alone, text windows are next-byte pairs, splits are stable partitions, quantization is monotone."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from reliability_support import _write

from smtrnn.data.images import Images, quantize, split_images
from smtrnn.data.real import DATA_TASKS
from smtrnn.data.tasks import NO_TARGET, all_tasks, make_task
from smtrnn.data.text import Corpus, load_text, split_corpus
from smtrnn.errors import DataError

# --- properties of the task generators and the data loaders (hypothesis) --------------------------------------

SMALL_TASKS = sorted(set(all_tasks()) - set(DATA_TASKS))  # the data tasks need data; their own tests cover them


@settings(max_examples=25, deadline=None)
@given(
    name=st.sampled_from(SMALL_TASKS), batch=st.integers(1, 5), extra=st.integers(0, 20), seed=st.integers(0, 2**31 - 1)
)
def test_a_generator_is_a_function_of_its_seed_alone(name, batch, extra, seed):
    task = make_task(name)
    length = task.min_seq_len() + extra
    rng_before = torch.get_rng_state()
    first = task.sample(batch, length, torch.Generator().manual_seed(seed))
    second = task.sample(batch, length, torch.Generator().manual_seed(seed))
    assert torch.equal(rng_before, torch.get_rng_state())  # the global RNG is never touched
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    x, y = first
    assert x.dtype == y.dtype == torch.long and x.shape == y.shape == (batch, length)
    assert ((y == NO_TARGET) | ((y >= 0) & (y < task.vocab_size))).all()
    assert ((x >= 0) & (x < task.vocab_size)).all()


@settings(max_examples=15, deadline=None)
@given(
    contents=st.lists(st.binary(min_size=1, max_size=80).filter(lambda b: b"\x00" not in b), min_size=2, max_size=6),
    length=st.integers(2, 8),
    seed=st.integers(0, 2**31 - 1),
)
def test_text_windows_are_next_byte_pairs_of_the_training_documents(contents, length, seed):
    with tempfile.TemporaryDirectory() as root:
        for i, data in enumerate(contents):
            _write(Path(root) / f"f{i:02d}.txt", data * 10)
        task = make_task("text", path=root)
        training = [bytes(doc.tolist()) for doc in task.documents()]
        if task.max_seq_len() < length:
            return
        x, y = task.sample(3, length, torch.Generator().manual_seed(seed))
        again = task.sample(3, length, torch.Generator().manual_seed(seed))
    assert set(training) <= {data * 10 for data in contents} and len(training) < len(contents)  # whole files
    assert torch.equal(x, again[0]) and torch.equal(y, again[1])
    assert torch.equal(x[:, 1:], y[:, :-1])  # y is x shifted by one byte
    for row_x, row_y in zip(x.tolist(), y.tolist()):
        assert bytes(row_x + row_y[-1:]) in b"".join(training)  # a window of the training documents, end to end


@settings(max_examples=20, deadline=None)
@given(
    contents=st.lists(st.binary(min_size=0, max_size=60).filter(lambda b: b"\x00" not in b), min_size=1, max_size=5),
    max_bytes=st.one_of(st.none(), st.integers(1, 200)),
)
def test_load_text_keeps_the_bytes_in_sorted_order(contents, max_bytes):
    with tempfile.TemporaryDirectory() as root:
        for i, data in enumerate(contents):
            _write(Path(root) / f"f{i:02d}.txt", data)
        expected = b"".join(contents)
        if not expected:
            with pytest.raises(DataError, match="no non-empty files"):
                load_text(root, max_bytes=max_bytes)
            return
        corpus = load_text(root, max_bytes=max_bytes)
    read = b"".join(bytes(doc.tolist()) for doc in corpus.documents)
    assert read == (expected[:max_bytes] if max_bytes else expected)
    assert corpus.names == sorted(corpus.names) and all(doc.numel() for doc in corpus.documents)
    assert corpus.vocab_size == 256


@settings(max_examples=30, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 20), min_size=1, max_size=12),
    fraction=st.floats(0.01, 0.99),
    seed=st.integers(0, 1000),
)
def test_split_corpus_is_a_stable_partition(sizes, fraction, seed):
    names = [f"doc{seed}-{i}.txt" for i in range(len(sizes))]
    docs = [torch.full((n,), i % 256, dtype=torch.uint8) for i, n in enumerate(sizes)]
    corpus = Corpus(docs, names, 256)
    if len(sizes) == 1 and sizes[0] < 2:
        with pytest.raises(DataError, match="cannot be split"):
            split_corpus(corpus, fraction)
        return
    train, valid = split_corpus(corpus, fraction)
    again = split_corpus(corpus, fraction)
    assert (train.names, valid.names) == (again[0].names, again[1].names)
    assert train.documents and valid.documents
    if len(sizes) == 1:  # one document: cut into a head and a tail
        assert torch.equal(torch.cat([train.documents[0], valid.documents[0]]), docs[0])
    else:
        assert sorted(train.names + valid.names) == sorted(names) and not set(train.names) & set(valid.names)
    assert train.num_tokens + valid.num_tokens == corpus.num_tokens


@settings(max_examples=30, deadline=None)
@given(
    count=st.integers(1, 6),
    height=st.integers(1, 4),
    width=st.integers(1, 4),
    levels=st.integers(2, 300),
    target=st.integers(2, 300),
    seed=st.integers(0, 1000),
)
def test_quantize_is_monotone_onto_the_new_levels(count, height, width, levels, target, seed):
    pixels = torch.randint(0, levels, (count, height, width), generator=torch.Generator().manual_seed(seed))
    images = Images(pixels.to(torch.uint8 if levels <= 256 else torch.int32), levels, "random")
    coarse = quantize(images, target)
    assert coarse.levels == target and coarse.pixels.shape == pixels.shape
    assert coarse.pixels.dtype == (torch.uint8 if target <= 256 else torch.int32)
    flat, order = pixels.flatten(), pixels.flatten().argsort()
    mapped = coarse.pixels.flatten().long()[order]
    assert (mapped[1:] >= mapped[:-1]).all()  # a brighter pixel never becomes darker
    assert 0 <= mapped.min() and mapped.max() < target
    if target == levels:
        assert torch.equal(coarse.pixels.long(), flat.view_as(pixels))


@settings(max_examples=30, deadline=None)
@given(count=st.integers(1, 40), fraction=st.floats(0.0, 1.0))
def test_split_images_holds_out_a_nonempty_tail(count, fraction):
    images = Images(torch.arange(count, dtype=torch.int32).view(count, 1, 1) % 7, 7, "ramp")
    if count < 2 or not 0 < fraction < 1:
        with pytest.raises(DataError):
            split_images(images, fraction)
        return
    train, valid = split_images(images, fraction)
    assert len(train) >= 1 and len(valid) >= 1 and len(train) + len(valid) == count
    assert torch.equal(torch.cat([train.pixels, valid.pixels]), images.pixels)
    if 1 < len(valid) < count - 1:  # not clamped: the fewest images that hold out at least the fraction
        assert len(valid) - 1 < fraction * count <= len(valid) + 1e-9
