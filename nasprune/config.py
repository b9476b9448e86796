"""The one config validator: a mapping (from YAML, ``experiment.json`` or the CLI) into a typed dataclass.

:func:`from_mapping` builds a config dataclass field by field against its type hints, so that an unknown
key at any depth, a wrong type or a value the dataclass refuses is one :class:`ConfigError` that names the
key, the value and what is expected, before any work starts::

    >>> from_mapping(TrainConfig, {"epocs": 2}, "search.proxy_train")
    ConfigError: search.proxy_train.epocs: unknown key (did you mean 'epochs'?); known keys: epochs, ...

A mapping given for a field whose default is a config dataclass lists the settings that differ from that
default (``scoring.train: {lr: 0.02}`` keeps ``ScoringConfig``'s 6 epochs). A key a dataclass has moved
(its ``MOVED``: old dotted key -> new dotted key) is still read in its old place, with a FutureWarning.

Every config dataclass of the pipeline goes through it: ``DatasetSpec``, ``TrainConfig``,
``ScoringConfig``, ``InfluenceConfig``, the experiment (``nasprune/search/_experiment.py``) and the ``nasprune run``
config (``nasprune/workflows/_config.py``).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import numbers
import re
import types
import typing
import warnings
from collections.abc import Mapping

from functools import cache
from typing import Any, Union

import numpy as np
import yaml

from nasprune.errors import ConfigError
from nasprune.errors import join_key as _join

__all__ = ["NAME_PATTERN", "check_fields", "check_name", "check_random_state", "from_mapping", "merged", "migrate",
           "read_json", "read_yaml", "to_mapping"]


# --- reading a config file ---------------------------------------------------------------------------------------


def read_json(text: str) -> Any:
    """A JSON document in which every key of an object appears once: JSON keeps the last of a repeated key and
    drops the others silently, so a repeated key is a :class:`ConfigError` naming it."""
    return json.loads(text, object_pairs_hook=_once)


def _once(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise ConfigError(f"the key {key!r} appears twice in one object (JSON would keep only the last); keep one")
        out[key] = value
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a mapping that repeats a key (YAML would keep only the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConfigError(f"line {key_node.start_mark.line + 1}: the key {key!r} appears twice in one mapping "
                                  "(YAML would keep only the last); keep one")
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_yaml(text: str) -> Any:
    """A YAML document read safely, in which every key of a mapping appears once (see :func:`read_json`)."""
    return yaml.load(text, Loader=_UniqueKeyLoader)


#: What a name may hold (an experiment's, a training set's, a proxy's): it names files and Optuna studies.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]+")


def check_name(value: str, key: str, error: type[ConfigError] = ConfigError) -> None:
    """Refuse a name that :data:`NAME_PATTERN` does not match in full, naming ``key``."""
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        raise error(f"must be letters, digits, '.', '_' or '-', got {value!r}", key)


# --- the validator -----------------------------------------------------------------------------------------------


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_mapping(cls: type, data: Any, where: str = "") -> Any:
    """An instance of dataclass ``cls`` from ``data``, every field checked against its type hint.

    An instance of ``cls`` is returned as it is. ``where`` is the key path of ``data`` in its file, for
    messages. Raises :class:`ConfigError`.
    """
    if isinstance(data, cls):
        return data
    if not isinstance(data, Mapping):
        raise ConfigError(f"expected a mapping of {cls.__name__} settings, got {_show(data)}", where)
    data = migrate(cls, data, where)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    moved = getattr(cls, "MOVED", {})
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(str(key), [*fields, *moved], n=1)
            hint = f" (did you mean {moved.get(close[0], close[0])!r}?)" if close else ""
            raise ConfigError(f"unknown key{hint}; known keys: {', '.join(fields)}", _join(where, str(key)))
    missing = [name for name, f in fields.items() if name not in data and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"missing required key {missing[0]!r}", where)
    hints = _hints(cls)
    values = {key: _coerce(_over_default(fields[key], value, _join(where, key)), hints[key], _join(where, key))
              for key, value in data.items()}
    try:
        return cls(**values)
    except ConfigError as e:
        raise e.under(where) from None
    except (ValueError, TypeError) as e:  # the dataclass's own checks (__post_init__)
        raise ConfigError(str(e), where) from None


def migrate(moved: type | Mapping[str, str], data: Mapping, where: str = "") -> Mapping:
    """``data`` with the keys ``moved`` lists (a mapping old -> new, or a dataclass's ``MOVED``) moved to their new
    place, each with a FutureWarning naming the new key; a key given in both places is a ConfigError. Old and new
    keys are dotted paths: a rename (``method`` -> ``hessian``), into a section (``epochs`` -> ``train.epochs``)
    or between sections (``influence.target`` -> ``objective.target``)."""
    moved = moved if isinstance(moved, Mapping) else getattr(moved, "MOVED", {})
    found = [old for old in moved if _lookup(data, old) is not _NOTHING]
    if not found:
        return data
    data = _copy_sections(data)
    for old in found:
        new = moved[old]
        *section, leaf = new.split(".")
        inner = data
        for i, part in enumerate(section):
            if inner.get(part) is None:
                inner[part] = {}
            if not isinstance(inner[part], Mapping):
                raise ConfigError(f"moved to {_join(where, new)}, but {_join(where, '.'.join(section[:i + 1]))} is "
                                  "not a mapping", _join(where, old))
            inner = inner[part]
        if leaf in inner:
            raise ConfigError(f"given twice: here (the old form) and as {_join(where, new)}; keep only "
                              f"{_join(where, new)}", _join(where, old))
        warnings.warn(f"{_join(where, old)} is deprecated: write it as {_join(where, new)}", FutureWarning,
                      stacklevel=3)
        *old_section, old_leaf = old.split(".")
        holder = data
        for part in old_section:
            holder = holder[part]
        inner[leaf] = holder.pop(old_leaf)
    return data


_NOTHING = object()


def _lookup(data: Any, path: str) -> Any:
    """The value at dotted ``path`` in nested mappings, or ``_NOTHING``."""
    for part in path.split("."):
        if not isinstance(data, Mapping) or part not in data:
            return _NOTHING
        data = data[part]
    return data


def _copy_sections(data: Mapping) -> dict:
    """A copy of nested mappings (not of other values), so that moving keys leaves the caller's data alone."""
    return {k: _copy_sections(v) if isinstance(v, Mapping) else v for k, v in data.items()}


def _over_default(f: dataclasses.Field, value: Any, where: str) -> Any:
    """A mapping given for a field whose default is a dataclass instance changes that default's settings (those
    of ``ScoringConfig.train`` are not ``TrainConfig``'s); an empty section (None) is the default itself."""
    if not (value is None or isinstance(value, Mapping)):
        return value
    default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
    if not dataclasses.is_dataclass(default) or isinstance(default, type):
        return value
    value = migrate(type(default), value or {}, where)  # before the merge, or an old key is "given twice"
    return {**{g.name: to_mapping(getattr(default, g.name)) for g in dataclasses.fields(default) if g.init},
            **value}


def merged(base: Mapping, over: Mapping) -> dict:
    """``base`` with the settings of ``over`` put in, section by section: ``merged({"train": {"epochs": 6,
    "lr": 0.01}}, {"train": {"epochs": 2}})`` keeps the lr. For a section that lists what differs from another."""
    out = dict(base)
    for key, value in over.items():
        both = isinstance(value, Mapping) and isinstance(out.get(key), Mapping)
        out[key] = merged(out[key], value) if both else value
    return out


def check_fields(config: Any) -> None:
    """Check (and convert, e.g. lists to tuples) every field of a dataclass instance in place, for a
    dataclass that validates itself in ``__post_init__`` whichever way it was built."""
    hints = _hints(type(config))
    for f in dataclasses.fields(config):
        object.__setattr__(config, f.name, _coerce(getattr(config, f.name), hints[f.name], f.name))


def _show(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """``value`` as type ``tp``, or a ConfigError naming ``where``. Lists become tuples where the hint says so;
    a float may be written as an int or in YAML's string form of scientific notation (``1e-5``)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _coerce(value, option, where)
            except ConfigError as e:
                errors.append(e)
        if len(options) == 1 and errors[0].key != where:  # the mistake is inside the value: say where
            raise errors[0]
        same_shape = [e for a, e in zip(options, errors) if _shape(a) == _shape(type(value))]
        if len(same_shape) == 1 and len(options) > 1:  # e.g. a mapping given where a list or a mapping is allowed
            raise same_shape[0]
        raise ConfigError(f"expected {' or '.join(_name(a) for a in args)}, got {_show(value)}", where)
    if dataclasses.is_dataclass(tp):
        return from_mapping(tp, {} if value is None else value, where)  # an empty YAML section: defaults
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and re.fullmatch(r"\s*[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+\s*", value):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif origin in (list, tuple) or tp in (list, tuple):
        if isinstance(value, (list, tuple)):
            item = args[0] if args else Any
            items = [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
            return tuple(items) if (origin or tp) is tuple else items
    elif origin is dict or tp is dict:
        if isinstance(value, Mapping):
            item = args[1] if args else Any
            return {k: _coerce(v, item, _join(where, str(k))) for k, v in value.items()}
    else:
        raise TypeError(f"from_mapping cannot check type {tp!r} (at {where})")
    raise ConfigError(f"expected {_name(tp)}, got {_show(value)}", where)


def _shape(tp: Any) -> str:
    origin = typing.get_origin(tp) or tp
    if dataclasses.is_dataclass(tp) or origin is dict or (isinstance(origin, type) and issubclass(origin, Mapping)):
        return "mapping"
    return "list" if origin in (list, tuple) else "scalar"


_PLURAL = {int: "ints", float: "numbers", str: "strings", bool: "booleans"}


def _name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return f"a mapping of {tp.__name__} settings"
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (list, tuple) or tp in (list, tuple):
        return f"a list of {_PLURAL.get(args[0], _name(args[0]))}" if args and args[0] is not Any else "a list"
    if origin is dict or tp is dict:
        return "a mapping"
    return {int: "an int", float: "a number", str: "a string", bool: "true or false"}.get(tp, str(tp))


def to_mapping(config: Any) -> Any:
    """A config dataclass as plain YAML/JSON values (tuples become lists): ``from_mapping`` reads it back."""
    if dataclasses.is_dataclass(config):
        return {f.name: to_mapping(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, (list, tuple)):
        return [to_mapping(v) for v in config]
    if isinstance(config, Mapping):
        return {k: to_mapping(v) for k, v in config.items()}
    return config


def check_random_state(seed: None | int | np.random.Generator) -> np.random.Generator:
    """Turn None, an int or a Generator into a ``np.random.Generator`` (the one seed path of the package)."""
    if seed is None or isinstance(seed, np.random.Generator):
        return np.random.default_rng(seed)
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        if seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed}")
        return np.random.default_rng(int(seed))
    raise ValueError(f"seed must be None, an int or a numpy Generator, got {seed!r} "
                     f"of type {type(seed).__name__}")
