"""Route the libraries' own log records and Python warnings into the run folder, not the console.

transformers, datasets, TRL, peft and torch warn about things that concern their developers (a
tokenizer's ``6146 > 4096`` length notice, deprecations, progress bars while writing shards); ftx
prints its own progress. While a run is in progress their records go to ``libraries.log`` in the
run folder, where a user who wants them finds them; errors still raise as exceptions.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

LIBRARY_LOGGERS: tuple[str, ...] = ("transformers", "datasets", "trl", "peft", "accelerate", "torch", "py.warnings")
"""Loggers whose records are routed; ``py.warnings`` carries :mod:`warnings` once captured."""


@contextlib.contextmanager
def library_logs_to(path: Path) -> Iterator[None]:
    """While the block runs, library log records and warnings are appended to ``path`` instead of stderr."""
    progress = _hide_progress_bars()  # first: importing transformers' logging adds its stderr handler
    handler = logging.FileHandler(path, encoding="utf-8", delay=True)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    saved = []
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, list(logger.handlers), logger.propagate, logger.level))
        logger.handlers = [handler]
        logger.propagate = False
        if logger.level == logging.NOTSET or logger.level > logging.WARNING:
            logger.setLevel(logging.WARNING)
    with warnings.catch_warnings():
        logging.captureWarnings(True)
        warnings.simplefilter("default")
        try:
            yield
        finally:
            logging.captureWarnings(False)
            for logger, handlers, propagate, level in saved:
                logger.handlers, logger.propagate, logger.level = handlers, propagate, level
            handler.close()
            progress()


def _hide_progress_bars() -> Callable[[], None]:
    """Turn off transformers' tqdm bars (shard writing, loading) and return how to turn them back on."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover - transformers is a core dependency
        return lambda: None
    hf_logging.get_logger("transformers")  # configures the library's root logger now, not inside the block
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    return hf_logging.enable_progress_bar if was_enabled else (lambda: None)
