"""sparsetune: sparse and parameter-efficient sparse fine-tuning of language models."""
__version__ = "0.1.0"


def run(cfg, run_dir=None, callbacks=None):
    from .run import run as _run

    return _run(cfg, run_dir, callbacks)
