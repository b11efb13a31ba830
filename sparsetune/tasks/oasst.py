"""task=oasst2: instruction tuning on OpenAssistant Conversations 2 (SPEFT Table 2, MMLU after fine-tuning).

Each message tree gives one conversation, its best-ranked thread; the training example is the thread's
turns before its last assistant reply (the prompt) and that reply (the target), loss on the reply only
unless options.train_on_inputs (conversations.py). options.prompt_format: auto (the tokenizer's chat
template when it has one, else guanaco) | chat_template | guanaco. options.languages: the root prompt's
`lang` codes to keep (null = all).

With a chat template the template decides BOS and the reply's end: a BOS it writes is kept (once), and EOS
is appended only when the rendered reply does not already end with it. With guanaco, add_bos / add_eos
work as for alpaca.

Sources: the hub (OpenAssistant/oasst2: train, validation) or task.data_files={train: .., validation: ..}
(the hub's message rows as .parquet / .jsonl / .json; oasst_files.py), loaded lazily (lazy_files.py).
Without a validation file, options.val_set_size threads are carved from train (seeded).
"""
from __future__ import annotations

import os
from itertools import accumulate
from pathlib import Path

import pyarrow as pa
from datasets import Dataset, Value
from datasets.fingerprint import Hasher

from ..errors import ConfigError
from ..registry import TASK_LOADERS
from .arrow_cache import cached_map, code_version, text_features
from .base import TaskData
from .causal_lm import task_options, wants_bos
from .conversations import best_threads, chat_pair, guanaco_pair, prompt_format
from .instruction import instruction_data, languages_option, one_eval_split
from .lazy_files import lazy_dataset
from .local_files import hub_splits, local_paths
from .oasst_files import FLAGS, LAYOUT, OPTIONAL_TEXT, REQUIRED, ROLES, check_messages

DEFAULTS = {"prompt_format": "auto", "languages": None, "train_on_inputs": False, "val_set_size": 500, "split_seed": 42,
            "add_bos": "auto", "add_eos": True, "train_subset": "random"}
FEATURES = text_features((*REQUIRED, *OPTIONAL_TEXT), rank=Value("int64"), **{f: Value("bool") for f in FLAGS})
PROBE = (["prompter", "assistant"], ["Hi", "Hello"])


def message_splits(task, splits: list[str]) -> tuple[dict[str, Dataset], str]:
    """{split: message rows} for the splits that have them; the train split is required."""
    paths = local_paths(task, LAYOUT)
    if paths is None:
        hub = hub_splits(task.hub_id, task.hub_config, splits, "task.data_files={train: oasst2_train.parquet}")
        return hub, f"hub {task.hub_id}"
    if task.train_split not in paths:
        raise ConfigError(f"task.data_files / task.data_dir must provide the train split {task.train_split!r} "
                          f"(data_dir file name: {LAYOUT['train']})")
    roles_ok = lambda ds: set(ds.unique("role")) <= set(ROLES)
    out = {s: lazy_dataset(p, FEATURES, REQUIRED, check_messages, roles_ok) for s, p in paths.items() if s in splits}
    return out, f"files {({s: str(p) for s, p in paths.items() if s in splits})}"


def column(table: pa.Table, name: str) -> list:
    return table.column(name).to_pylist() if name in table.column_names else [None] * table.num_rows


def conversations(messages: Dataset, languages: set[str] | None) -> tuple[Dataset, dict]:
    """The best-ranked thread of every tree as rows {roles, texts, lang}, written once to datasets' cache
    (named by the messages' fingerprint), so the steps after it are cached too. Only the tree columns
    become Python lists; the texts are gathered by Arrow."""
    table = messages.with_format("arrow")[:]
    ids = column(table, "message_id")
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ConfigError(f"message_id {dup!r} occurs more than once in the OASST2 messages; each message needs its own id")
    if languages is not None and "lang" not in table.column_names:
        raise ConfigError("task.options.languages needs a 'lang' column in the OASST2 messages")
    flags = [column(table, f) for f in FLAGS]
    usable = [not deleted and review is not False for deleted, review in zip(*flags)]
    threads, counts = best_threads(ids, column(table, "parent_id"), column(table, "role"), column(table, "rank"), usable,
                                   column(table, "lang"), languages)
    if not threads:
        raise ConfigError(f"no conversation with an assistant reply in the OASST2 messages ({counts}; "
                          f"task.options.languages={sorted(languages) if languages else None})")
    rows = pa.array([i for t in threads for i in t], pa.int64())
    offsets = pa.array([0, *accumulate(len(t) for t in threads)], pa.int32())
    threads_table = pa.table({
        "roles": pa.ListArray.from_arrays(offsets, table.column("role").take(rows).combine_chunks()),
        "texts": pa.ListArray.from_arrays(offsets, table.column("text").take(rows).combine_chunks()),
        "lang": table.column("lang").take(pa.array([t[0] for t in threads], pa.int64())) if "lang" in table.column_names
        else pa.nulls(len(threads), pa.string()),
    })
    key = Hasher.hash([messages._fingerprint, sorted(languages) if languages else None, code_version()])
    return cached_table(threads_table, key), counts


def cached_table(table: pa.Table, key: str) -> Dataset:
    """`table` as a memory-mapped Dataset from an Arrow file in datasets' cache (written once per key)."""
    import datasets

    path = Path(datasets.config.HF_DATASETS_CACHE) / "sparsetune-tables" / f"{key}.arrow"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        with pa.OSFile(str(partial), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        os.replace(partial, path)
    return Dataset.from_file(str(path))


def render(threads: Dataset, tokenizer, style: str, strip_bos: bool) -> Dataset:
    """Threads -> {prompt, target}."""
    bos_text = tokenizer.bos_token if strip_bos else None

    def fill(batch):
        pairs = [chat_pair(tokenizer, r, t) if style == "chat_template" else guanaco_pair(r, t)
                 for r, t in zip(batch["roles"], batch["texts"])]
        prompts = [p[len(bos_text):] if bos_text and p.startswith(bos_text) else p for p, _ in pairs]
        return {"prompt": prompts, "target": [t for _, t in pairs]}

    return cached_map(threads, fill, batched=True, remove_columns=threads.column_names, desc="render conversations")


@TASK_LOADERS.register("oasst2")
def load_oasst2(task, tokenizer, seed: int) -> TaskData:
    opts = task_options(task, DEFAULTS)
    eval_name = one_eval_split(task)
    style = prompt_format(tokenizer, opts["prompt_format"])
    languages = languages_option(opts["languages"], "[en, de]")
    wants_bos(tokenizer, opts["add_bos"])  # validates the option before any data is read
    template_bos = template_eos = False
    if style == "chat_template":  # what the template writes itself, seen on a two-turn probe
        prompt, reply = chat_pair(tokenizer, *PROBE)
        template_bos = bool(tokenizer.bos_token) and prompt.startswith(tokenizer.bos_token)
        template_eos = bool(tokenizer.eos_token) and reply.endswith(tokenizer.eos_token)
    messages, source = message_splits(task, [task.train_split, eval_name])
    pairs, threads = {}, {}
    for split, ds in messages.items():
        convs, threads[split] = conversations(ds, languages)
        pairs[split] = render(convs, tokenizer, style, template_bos)
    bos = True if template_bos else wants_bos(tokenizer, opts["add_bos"])
    eos = bool(opts["add_eos"]) and not template_eos
    return instruction_data(task, tokenizer, seed, opts, pairs, bos=bos, eos=eos, info={
        "source": source, "prompt_template": style, "threads": threads, "languages": sorted(languages) if languages else None,
        "template_writes_bos": template_bos, "template_ends_reply_with_eos": template_eos})
