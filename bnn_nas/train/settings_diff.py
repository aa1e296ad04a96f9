"""Which settings make two trainings different runs: what a resume, a teacher spec's run
directory and `compare`'s seed rows must agree on (paths, devices, checkpointing and speed
settings need not)."""

from __future__ import annotations

from typing import Any

from bnn_nas.config import Config, config_to_dict

# Settings in which two trainings may differ and still be one run (a resumed run, seeds of
# one schedule): where files are, the device, how often it saves, how fast (not what) a
# step computes, and what only a search reads.
_FREE_SETTINGS = {
    ("device",), ("run_dir",), ("plugins",), ("train",), ("search",), ("executor",),
    ("data", "root"), ("data", "download"), ("data", "cache_dir"), ("data", "valid_fraction"),
    ("data", "search_train_size"), ("data", "search_valid_size"),
    ("final", "checkpoint_every"), ("final", "eval_batch_size"), ("final", "cuda_graph"),
    ("final", "channels_last"), ("final", "tensorboard"),
    # torch.compile changes how fast the step runs, not what it computes (compiled trainings
    # match eager ones within the seed spread: README, "Training recipes")
    ("final", "compile"), ("final", "compile_scope"),
    # a teacher spec's config file: where it lies (stored absolute); what it trains is
    # compared with the teacher's run directory before the student trains
    ("final", "distill", "teacher", "config"),
}  # fmt: skip


def _changed_keys(before: Any, now: Any, path: tuple[str, ...] = ()) -> list[str]:
    if path in _FREE_SETTINGS:
        return []
    if isinstance(before, dict) and isinstance(now, dict):
        keys = sorted(set(before) | set(now))
        return [
            changed
            for key in keys
            for changed in _changed_keys(before.get(key), now.get(key), (*path, key))
        ]
    return [] if before == now else [".".join(path)]


def changed_settings(before: Config, now: Config) -> list[str]:
    """Dotted keys of the settings that make two runs different runs (paths, device,
    checkpoint interval, speed and search-only settings do not)."""
    return _changed_keys(config_to_dict(before), config_to_dict(now))
