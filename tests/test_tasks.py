"""Tests for smtrnn.data.tasks: the contract every task keeps, then each task's own rules and its docstring example.

Each task's rules are written twice here, independently of the generator:
- an *oracle* that reads a prefix x_0..x_t in plain Python and returns the targets y_t may take (one value, or
  for modular_icl every value the past still allows). It never sees x_{>t}, so a generator that agrees with it
  has targets that no later input can change: that is the causality check.
- a *layout* check of where each kind of token may sit in x.
Both run on generated batches and on the worked example parsed from the task's docstring, so the docstring and
the generator cannot drift apart.
"""

from __future__ import annotations

import inspect
import json
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from smtrnn.data.tasks import NO_TARGET, TASKS, Task, TaskError, make_task

NAMES = sorted(TASKS)


def sample(task: Task, batch_size: int, seq_len: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    return task.sample(batch_size, seq_len, torch.Generator().manual_seed(seed))


def lengths(task: Task) -> list[int]:
    """The shortest length, an odd and an even one, and a longer one."""
    shortest = task.min_seq_len()
    return [shortest, shortest + 1, shortest + 2, shortest + 13]


def rows(x: torch.Tensor, y: torch.Tensor):
    return zip(x.tolist(), y.tolist())


# ---- oracles: the targets allowed at the last position of a prefix ----


def retrieval_oracle(task, prefix):
    if prefix[-1] != task.query:
        return {NO_TARGET}
    return {prefix[prefix.index(task.marker) + 1]}


def copy_oracle(task, prefix):
    if task.sep not in prefix:
        return {NO_TARGET}
    length = prefix.index(task.sep)  # the string is everything before the separator
    i = len(prefix) - 1 - (length + 1)
    return {prefix[i]} if 0 <= i < length else {NO_TARGET}


def delayed_recall_oracle(task, prefix):
    t = len(prefix) - 1
    return {prefix[t - task.lag]} if t >= task.lag else {NO_TARGET}


def assoc_recall_oracle(task, prefix):
    t, pairs = len(prefix) - 1, 2 * task.num_pairs
    if t < pairs or prefix[t] >= task.num_keys:
        return {NO_TARGET}
    return {prefix[i + 1] for i in range(0, pairs, 2) if prefix[i] == prefix[t]}


def stack_oracle(task, prefix):
    stack = []
    for token in prefix[:-1]:
        if token == task.pop:
            stack.pop()
        else:
            stack.append(token)
    return {stack[-1]} if prefix[-1] == task.pop else {NO_TARGET}


def parity_oracle(task, prefix):
    return {sum(prefix) % 2}


def consistent_maps(task, pairs):
    """Every hidden (w, b) of modular_icl that agrees with the (input, answer token) pairs."""
    p = task.modulus
    return [(w, b) for w in range(1, p) for b in range(p) if all(p + (w * a + b) % p == ans for a, ans in pairs)]


def modular_icl_oracle(task, prefix):
    t = len(prefix) - 1
    if t % 2 == 1:
        return {NO_TARGET}
    seen = list(zip(prefix[0:t:2], prefix[1:t:2]))
    return {task.modulus + (w * prefix[t] + b) % task.modulus for w, b in consistent_maps(task, seen)}


# ---- layouts: where each kind of token may sit ----


def retrieval_layout(task, x, y):
    T = len(x)
    assert x.count(task.marker) == 1 and x.index(task.marker) < T // 2, "one marker, in the first half"
    assert x.count(task.query) == 1 and x[-1] == task.query, "one query, at the end"
    assert sum(v != NO_TARGET for v in y) == 1, "exactly one label"


def copy_layout(task, x, y):
    T = len(x)
    length = task.copy_len or (T - 1) // 2
    assert all(s < task.num_symbols for s in x[:length])
    assert x[length : 2 * length + 1] == [task.sep] + [task.blank] * length
    assert x[2 * length + 1 :] == [task.pad] * (T - 2 * length - 1)


def delayed_recall_layout(task, x, y):
    assert all(s < task.num_symbols for s in x)


def assoc_recall_layout(task, x, y):
    T, pairs, queries = len(x), task.num_pairs, task.num_queries
    keys, values, asked = x[0 : 2 * pairs : 2], x[1 : 2 * pairs : 2], x[T - queries :]
    assert len(set(keys)) == pairs and all(k < task.num_keys for k in keys), "distinct keys"
    assert all(task.num_keys <= v < task.fill for v in values), "values in their own range"
    assert x[2 * pairs : T - queries] == [task.fill] * (T - 2 * pairs - queries), "filler between"
    assert len(set(asked)) == queries and set(asked) <= set(keys), "distinct queries about present keys"


def stack_layout(task, x, y):
    depth = 0
    for token in x:
        depth += 1 if token != task.pop else -1
        assert depth >= 0, "never pops an empty stack"


def parity_layout(task, x, y):
    assert set(x) <= {0, 1}


def modular_icl_layout(task, x, y):
    p = task.modulus
    assert all(a < p for a in x[0::2]) and all(p <= ans < 2 * p for ans in x[1::2]), "input, answer, input, ..."
    assert consistent_maps(task, list(zip(x[0::2], x[1::2]))), "one hidden (w, b) explains the whole sequence"


RULES = {
    "retrieval": (retrieval_oracle, retrieval_layout),
    "copy": (copy_oracle, copy_layout),
    "delayed_recall": (delayed_recall_oracle, delayed_recall_layout),
    "assoc_recall": (assoc_recall_oracle, assoc_recall_layout),
    "stack": (stack_oracle, stack_layout),
    "parity": (parity_oracle, parity_layout),
    "modular_icl": (modular_icl_oracle, modular_icl_layout),
}

# Small parameters, so the rules meet edge cases (few symbols, all keys used) within a small batch.
SMALL = {
    "retrieval": {"num_symbols": 3},
    "copy": {"num_symbols": 3},
    "delayed_recall": {"num_symbols": 3, "lag": 3},
    "assoc_recall": {"num_keys": 3, "num_values": 2, "num_pairs": 3, "num_queries": 2},
    "stack": {"num_symbols": 3},
    "parity": {},
    "modular_icl": {"modulus": 5},
}


def check_rules(task: Task, x: list[int], y: list[int]) -> None:
    oracle, layout = RULES[task.name]
    layout(task, x, y)
    for t in range(len(x)):
        assert y[t] in oracle(task, x[: t + 1]), f"target at t={t} disagrees with the past x_0..x_t in {x}"


def test_every_task_has_rules_and_small_params():
    assert set(RULES) == set(TASKS) == set(SMALL)


# ---- the contract every task keeps ----


@pytest.mark.parametrize("name", NAMES)
def test_shapes_dtypes_and_ids_in_range(name):
    task = make_task(name)
    for T in lengths(task):
        x, y = sample(task, 16, T)
        assert x.shape == y.shape == (16, T) and x.dtype == y.dtype == torch.long
        assert 0 <= x.min() and x.max() < task.vocab_size
        assert ((y == NO_TARGET) | ((0 <= y) & (y < task.vocab_size))).all()
        assert (y != NO_TARGET).any(), "a batch with no target cannot train anything"


@pytest.mark.parametrize("name", NAMES)
def test_vocab_size_is_tight(name):
    """Every id below vocab_size shows up, so the vocabulary is not padded with ids no batch uses."""
    task = make_task(name, **SMALL[name])
    seen = set()
    for T in (task.min_seq_len() + 8, task.min_seq_len() + 9):  # odd and even: copy pads only even T
        x, y = sample(task, 256, T)
        seen |= set(x.unique().tolist()) | set(y.unique().tolist())
    assert seen - {NO_TARGET} == set(range(task.vocab_size))


@pytest.mark.parametrize("name", NAMES)
def test_seed_fixes_the_batch_and_global_rng_is_unused(name):
    task = make_task(name)
    T = task.min_seq_len() + 9
    torch.manual_seed(1)
    x1, y1 = sample(task, 8, T, seed=3)
    torch.manual_seed(2)
    x2, y2 = sample(task, 8, T, seed=3)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    x3, _ = sample(task, 8, T, seed=4)
    assert not torch.equal(x1, x3)


@pytest.mark.parametrize("name", NAMES)
def test_targets_follow_from_the_past_and_the_rules(name):
    """y_t is what the oracle derives from x_0..x_t alone, so changing any x_{>t} cannot change y_{<=t}."""
    for params in ({}, SMALL[name]):
        task = make_task(name, **params)
        for T in lengths(task):
            x, y = sample(task, 8, T, seed=T)
            for xs, ys in rows(x, y):
                check_rules(task, xs, ys)


@pytest.mark.parametrize("name", NAMES)
def test_min_seq_len_is_enforced(name):
    task = make_task(name)
    shortest = task.min_seq_len()
    with pytest.raises(TaskError, match=rf"^task '{name}' needs seq_len >= {shortest}, got {shortest - 1}$"):
        sample(task, 2, shortest - 1)
    x, y = sample(task, 2, shortest)
    assert x.shape == (2, shortest)


@pytest.mark.parametrize(
    "name, shortest",
    [
        ("retrieval", 3),
        ("copy", 3),
        ("delayed_recall", 4),
        ("assoc_recall", 8),
        ("stack", 2),
        ("parity", 1),
        ("modular_icl", 5),
    ],
)
def test_min_seq_len_is_the_shortest_posable_sequence(name, shortest):
    """Pinned per task (with SMALL's parameters), since sampling alone cannot tell a minimum that is too large."""
    assert make_task(name, **SMALL[name]).min_seq_len() == shortest


def test_batch_size_must_be_positive():
    with pytest.raises(TaskError, match="batch_size >= 1"):
        sample(make_task("parity"), 0, 4)


@pytest.mark.parametrize("name", NAMES)
def test_describe_round_trips_through_json(name):
    task = make_task(name, **SMALL[name])
    params = json.loads(json.dumps(task.describe()))
    assert params.items() >= SMALL[name].items() and make_task(name, **params) == task


@settings(max_examples=25, deadline=None)
@given(
    name=st.sampled_from(NAMES), batch_size=st.integers(1, 6), extra=st.integers(0, 30), seed=st.integers(0, 2**32 - 1)
)
def test_any_size_and_seed_gives_valid_ids(name, batch_size, extra, seed):
    task = make_task(name)
    T = task.min_seq_len() + extra
    x, y = sample(task, batch_size, T, seed)
    assert x.shape == y.shape == (batch_size, T)
    assert 0 <= x.min() and x.max() < task.vocab_size
    assert ((y == NO_TARGET) | ((0 <= y) & (y < task.vocab_size))).all()


# ---- make_task errors ----


def test_unknown_task_lists_the_choices():
    every = sorted(NAMES + ["arrays", "passkey", "pixels", "text"])  # the synthetic tasks and the data tasks
    with pytest.raises(TaskError, match=rf"^unknown task 'foo'; choose from: {', '.join(every)}$"):
        make_task("foo")


@pytest.mark.parametrize("name", NAMES)
def test_unknown_parameter_is_named(name):
    with pytest.raises(TaskError, match=rf"^task '{name}' has no parameter 'bogus'; it takes"):
        make_task(name, bogus=1)


def test_unknown_parameter_lists_the_real_ones():
    with pytest.raises(TaskError, match="it takes: num_keys, num_values, num_pairs, num_queries$"):
        make_task("assoc_recall", bogus=1)
    with pytest.raises(TaskError, match="it takes no parameters$"):
        make_task("parity", bogus=1)


# One invalid value for every parameter of every task (checked below, so a new parameter needs a case here).
INVALID = [
    ("retrieval", "num_symbols", 1),
    ("copy", "num_symbols", 1),
    ("copy", "copy_len", 0),
    ("delayed_recall", "num_symbols", 1),
    ("delayed_recall", "lag", 0),
    ("assoc_recall", "num_keys", 0),
    ("assoc_recall", "num_values", 1),
    ("assoc_recall", "num_pairs", 9),  # more pairs than the 8 distinct keys
    ("assoc_recall", "num_queries", 5),  # more queries than the 4 pairs
    ("stack", "num_symbols", 1),
    ("modular_icl", "modulus", 1),
    ("retrieval", "num_symbols", 2.5),
    ("delayed_recall", "lag", True),
]


def test_every_parameter_has_an_invalid_case():
    params = {(name, field) for name in TASKS for field in make_task(name).describe()}
    assert params == {(name, field) for name, field, _ in INVALID}


@pytest.mark.parametrize("name, field, value", INVALID)
def test_invalid_value_names_task_and_parameter(name, field, value):
    with pytest.raises(TaskError, match=rf"^task '{name}': {field} must be ") as error:
        make_task(name, **{field: value})
    assert "\n" not in str(error.value)


def test_copy_len_sets_min_seq_len():
    task = make_task("copy", copy_len=5)
    assert task.min_seq_len() == 11
    x, y = sample(task, 2, 11)
    assert (y != NO_TARGET).sum(dim=1).tolist() == [5, 5]


# ---- each task's docstring example ----


def docstring_example(cls: type[Task]) -> tuple[Task, list[int], list[int]]:
    """The task, x and y of the class docstring's worked example, checking the special tokens it names.

    The header reads ``Example, ``Cls(param=value, ...)``: ... NAME = id ...::`` and is followed by an ``x:``
    and a ``y:`` line, where ``.`` means no target.
    """
    doc = inspect.getdoc(cls)
    header = " ".join(doc[doc.index("Example") : doc.index("::")].split())
    call = re.search(r"``(\w+)\((.*?)\)``", header)
    assert call[1] == cls.__name__
    task = cls(**{key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", call[2])})
    for token, value in re.findall(r"\b([A-Z]{2,}) = (\d+)", header):
        assert getattr(task, token.lower()) == int(value), f"{cls.__name__} docstring: {token} = {value}"
    lines = {
        line.split(":")[0].strip(): line.split(":")[1].split()
        for line in doc.splitlines()
        if re.match(r"\s*[xy]:", line)
    }
    x = [int(v) for v in lines["x"]]
    y = [NO_TARGET if v == "." else int(v) for v in lines["y"]]
    return task, x, y


@pytest.mark.parametrize("name", NAMES)
def test_docstring_example_follows_the_rules(name):
    task, x, y = docstring_example(TASKS[name])
    assert len(x) == len(y) >= task.min_seq_len()
    assert max(x + y) < task.vocab_size
    check_rules(task, x, y)


def test_modular_icl_docstring_names_its_hidden_map():
    task, x, _ = docstring_example(TASKS["modular_icl"])
    assert "w = 2, b = 1" in inspect.getdoc(TASKS["modular_icl"])
    assert consistent_maps(task, list(zip(x[0::2], x[1::2]))) == [(2, 1)]


# ---- each task's distribution: the generator explores what the rules allow ----


def test_retrieval_marker_lands_anywhere_in_the_first_half():
    x, _ = sample(make_task("retrieval", num_symbols=4), 400, 11)
    assert set((x == 4).int().argmax(dim=1).tolist()) == set(range(5))


def test_copy_default_length_is_the_longest_that_fits():
    task = make_task("copy")
    for T, expected in ((9, 4), (10, 4)):
        _, y = sample(task, 3, T)
        assert (y != NO_TARGET).sum(dim=1).tolist() == [expected] * 3


def test_delayed_recall_echoes_the_input():
    task = make_task("delayed_recall", lag=3)
    x, y = sample(task, 4, 12)
    assert torch.equal(y[:, 3:], x[:, :-3]) and (y[:, :3] == NO_TARGET).all()


def test_parity_is_the_running_sum_mod_2():
    x, y = sample(make_task("parity"), 4, 20)
    assert torch.equal(y, x.cumsum(dim=1) % 2)


def test_stack_goes_deep_and_pops_about_half_the_time():
    task = make_task("stack")
    x, y = sample(task, 64, 100)
    depth = torch.where(x == task.pop, -1, 1).cumsum(dim=1)
    assert depth.max() >= 8, "the deepest of 64 walks of 100 steps is typically over 20"
    pops = (x == task.pop).float().mean().item()
    assert 0.4 < pops < 0.5, "pops lose only the steps forced at an empty stack"
    assert torch.equal(y != NO_TARGET, x == task.pop)


def test_assoc_recall_queries_every_pair_across_a_batch():
    task = make_task("assoc_recall", num_keys=4, num_values=4, num_pairs=4, num_queries=1)
    x, _ = sample(task, 200, 12)
    keys = x[:, 0:8:2]
    asked = (keys == x[:, -1:]).int().argmax(dim=1)  # which pair each query asks about
    assert set(asked.tolist()) == {0, 1, 2, 3}


def test_modular_icl_draws_every_hidden_map():
    task = make_task("modular_icl", modulus=3)
    x, _ = sample(task, 200, 11)
    found = set()
    for xs in x.tolist():
        maps = consistent_maps(task, list(zip(xs[0::2], xs[1::2])))
        if len(maps) == 1:
            found |= set(maps)
    assert found == {(w, b) for w in (1, 2) for b in range(3)}
