"""The progress bars of pruning / salience / perplexity follow transformers' progress-bar switch."""
from transformers.utils import logging as hf_logging

from sparsetune.bars import bar


def test_bars_follow_transformers_switch():
    try:
        hf_logging.disable_progress_bar()
        assert bar(range(3), "x").disable
        hf_logging.enable_progress_bar()
        shown = bar(range(3), "pruning", unit="block")
        assert not shown.disable and list(shown) == [0, 1, 2] and shown.desc == "pruning"
    finally:
        hf_logging.enable_progress_bar()
