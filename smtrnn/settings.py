"""One path from a user's choices to a RunConfig, shared by `train`, `compare` and `demo`: the preset, then a
config file, then explicit fields (the command line's flags), then `--set FIELD=VALUE` items. The preset is built
for the task as those settings finally leave it, so the recipe's rule (`smtrnn.presets.recipe`) reads the task's
own parameters (`--set task.params=...`, `--data`). The config schema is `smtrnn.config`; reading a config file
is here."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

from smtrnn.config import RunConfig, apply_overrides, flatten, shown
from smtrnn.data.identity import absolute_source
from smtrnn.data.tasks import all_tasks
from smtrnn.errors import ConfigError
from smtrnn.presets import make_preset, small

KEEP_BEST_EVALUATIONS = 10  # evaluations a run keeping its best checkpoint chooses among, unless it sets a cadence
TASKS_WITH_DATA = tuple(  # the tasks `--data` gives a path to: those with a `path` parameter
    name for name, task in all_tasks().items() if "path" in {f.name for f in dataclasses.fields(task)}
)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a nested JSON or YAML config file (a partial RunConfig)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file {path} is a directory; pass a JSON or YAML file")
    if path.exists() and not path.is_file():  # a FIFO or a device: reading it could wait forever
        raise ConfigError(f"config file {path} is not a regular file")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {exc.start})") from exc
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # any parser error becomes one line naming the file
        reason = str(exc).splitlines()[0].partition("; use sys.")[0]  # not Python's advice to raise its digit limit
        raise ConfigError(f"config file {path} is not valid: {reason}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping")
    return data


def parse_set(items: list[str]) -> dict[str, str]:
    """['a.b=1', ...] -> {'a.b': '1', ...}"""
    overrides = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects FIELD=VALUE, got {shown(item)}")
        overrides[name.strip()] = value.strip()
    return overrides


def apply_set(cfg: RunConfig, items: list[str]) -> RunConfig:
    """Apply --set FIELD=VALUE items to cfg (in place). `task.params` merges key by key into the params already
    there, so a path given by --data (or a preset's task parameters) survives `--set task.params=...`."""
    overrides = parse_set(items)
    if "task.params" in overrides:
        before = dict(cfg.task.params)
        apply_overrides(cfg, {"task.params": overrides.pop("task.params")})
        cfg.task.params = before | cfg.task.params
    return apply_overrides(cfg, overrides)


def with_settings(
    cfg: RunConfig,
    file_data: dict | None = None,
    fields: dict[str, Any] | None = None,
    sets: list[str] = (),
    data: str | None = None,
    memory_size: int | None = None,
) -> RunConfig:
    """cfg (in place) with the config file's fields, then `fields` (None values skipped), then the data path
    (`--data`: the tasks with a path) and the memory size Z (`--memory-size`, a multiple of K), then --set items;
    a local data path is made absolute (`identity.absolute_source`), and `train.keep_best` without an evaluation
    cadence gets one: KEEP_BEST_EVALUATIONS evaluations over the budget (or the steps)."""
    apply_overrides(cfg, flatten(file_data or {}))
    apply_overrides(cfg, {name: value for name, value in (fields or {}).items() if value is not None})
    if data is not None:
        if cfg.task.name not in TASKS_WITH_DATA:
            raise ConfigError(f"--data applies to the tasks {', '.join(TASKS_WITH_DATA)}, not '{cfg.task.name}'")
        cfg.task.params = cfg.task.params | {"path": data}
    if memory_size is not None:
        tokens = cfg.memory.tokens
        if memory_size <= 0:
            raise ConfigError(
                f"--memory-size must be a positive multiple of memory tokens K={tokens}, got {memory_size}"
            )
        if memory_size % tokens:
            raise ConfigError(f"--memory-size {memory_size} is not divisible by memory tokens K={tokens}")
        cfg.memory.width = memory_size // tokens
    apply_set(cfg, list(sets))
    train = cfg.train
    if train.keep_best and not (train.eval_every or train.eval_every_seconds):  # the best of KEEP_BEST_EVALUATIONS
        if train.max_seconds:
            train.eval_every_seconds = train.max_seconds / KEEP_BEST_EVALUATIONS
        else:
            train.eval_every = max(1, train.steps // KEEP_BEST_EVALUATIONS)
    if isinstance(cfg.task.params.get("path"), str):  # stored absolute: a run read from elsewhere reads the same file
        cfg.task.params = cfg.task.params | {"path": absolute_source(cfg.task.params["path"])}
    return cfg


def make_config(preset: str, task: str | None, **settings: Any) -> RunConfig:
    """The preset for the task, then the settings of `with_settings`. The task defaults to the config file's, then
    retrieval; the preset is built for the task's final name and parameters."""
    if task is None:
        task = (settings.get("file_data") or {}).get("task", {}).get("name", "retrieval")
    final = with_settings(small(task), **settings).task
    return with_settings(make_preset(preset, final.name, final.params, final.seq_len), **settings)


def parse_budget(text: str) -> float:
    """A wall-clock budget as every command reads it (`train`, `compare`, `demo` --budget): '90' or '90s' -> 90.0
    seconds; '10m' -> 600.0; '1.5h' -> 5400.0."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(text))
    if not match or float(match.group(1)) <= 0:
        raise ConfigError(f"--budget must be a positive duration such as 90, 90s, 10m or 1.5h, got '{text}'")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]
