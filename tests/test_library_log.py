"""Library warnings go to the run folder's libraries.log, not the console."""

from __future__ import annotations

import logging
import warnings

from ftx.library_log import library_logs_to


def test_library_records_and_warnings_land_in_the_file_not_on_stderr(tmp_path, capsys):
    log = tmp_path / "libraries.log"
    with library_logs_to(log):
        logging.getLogger("transformers.tokenization_utils_base").warning("sequence length (6146 > 4096)")
        warnings.warn("a deprecation nobody asked about", UserWarning, stacklevel=1)
    captured = capsys.readouterr()
    assert "6146 > 4096" not in captured.err and "deprecation" not in captured.err
    text = log.read_text(encoding="utf-8")
    assert "6146 > 4096" in text and "a deprecation nobody asked about" in text


def test_handlers_are_restored_afterwards(tmp_path):
    logger = logging.getLogger("transformers")
    before = (list(logger.handlers), logger.propagate)
    with library_logs_to(tmp_path / "libraries.log"):
        assert logger.handlers != before[0]
    assert (list(logger.handlers), logger.propagate) == before
