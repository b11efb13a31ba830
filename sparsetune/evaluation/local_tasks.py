"""lm-eval's own tasks on local files: only the dataset is swapped.

Each task here is lm-eval's installed YAML (`TaskSpec.builtin`, under lm_eval/tasks/): its prompts, metrics,
filters, few-shot settings and version, and for MMLU its subjects and groups, all stay lm-eval's. For a run:
1. every dataset config the task reads (one; MMLU: one per subject of lm-eval's mmlu group) has its local
   files converted to the hub's documents (local_readers.py);
2. they are written as a local copy of the hub dataset, <work_dir>/<task>/<digest>/: one jsonl per config and
   split and a README.md whose `configs:` card lets `datasets.load_dataset(<dir>, <config>)` read it as it
   reads the hub repo (so lm-eval's own dataset_name still picks the subject);
3. a task YAML in it includes lm-eval's YAML and overrides dataset fields only: dataset_path (that copy),
   dataset_kwargs.cache_dir, and the splits without a local file (null).
The harness loads the tasks by name from a TaskManager that indexes only the lm-eval task folders they come from
(for MMLU's subgroups and subjects) and then these copies, whose YAML takes the name over from lm-eval's.
A task whose eval split has no usable file is skipped with the reason; it never runs on faked data.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .local_readers import (
    Converted,
    UnusableData,
    boolq_doc,
    gsm8k_doc,
    hub_jsonl,
    read_adapters_arc,
    read_adapters_openbookqa,
    read_adapters_piqa,
    read_adapters_siqa,
    read_adapters_winogrande,
    read_arc_csv,
    read_boolq_json,
    read_glue_rte_tsv,
    read_mbpp_jsonl,
    read_mmlu_csv,
    rte_doc,
)

SPLIT_KEYS = ("training_split", "validation_split", "test_split", "fewshot_split")
DEFAULT_CONFIG = "default"  # the config name datasets gives a dataset with dataset_name null


def lm_eval_tasks_dir() -> Path:
    """lm_eval/tasks/ of the installed lm-eval (found without importing it)."""
    spec = importlib.util.find_spec("lm_eval")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("lm-eval tasks need lm-eval installed (pip install lm-eval)")
    return Path(list(spec.submodule_search_locations)[0]) / "tasks"


@dataclass(frozen=True)
class TaskSpec:
    name: str  # lm-eval's task (or group) name
    builtin: str  # the YAML defining it, relative to lm_eval/tasks/
    folder: str  # its files under eval.data_dir; eval.files.<name>=<dir> stands in for it
    layout: dict[str, tuple[str, ...]]  # hub split -> candidate files in folder ({config}: the dataset config), first found wins
    readers: dict[str, Callable[[Path], Converted]]  # file suffix -> reader


def _commonsense(name: str, builtin: str, split: str, folder: str, required: tuple, reader) -> TaskSpec:
    # LLM-Adapters calls every eval split test.json: ARC's and OBQA's test, the others' validation split
    return TaskSpec(name, builtin, f"commonsense/{folder}", {split: (f"{split}.jsonl", "test.json"), "train": ("train.jsonl",)},
                    {".jsonl": hub_jsonl(required), ".json": reader})


def _arc(name: str, folder: str) -> TaskSpec:
    return TaskSpec(name, f"arc/{name}.yaml", f"commonsense/{folder}",
                    {"test": ("test.jsonl", "test.json"), "train": ("train.jsonl", "train.csv")},
                    {".jsonl": hub_jsonl(("question", "choices", "answerKey")), ".json": read_adapters_arc, ".csv": read_arc_csv})


def _gsm8k(name: str, builtin: str) -> TaskSpec:
    return TaskSpec(name, builtin, "gsm8k", {"test": ("test.jsonl",), "train": ("train.jsonl",)},
                    {".jsonl": hub_jsonl(("question", "answer"), gsm8k_doc)})


TASKS: dict[str, TaskSpec] = {spec.name: spec for spec in [
    _arc("arc_easy", "ARC-Easy"),
    _arc("arc_challenge", "ARC-Challenge"),
    _commonsense("openbookqa", "openbookqa/openbookqa.yaml", "test", "openbookqa", ("question_stem", "choices", "answerKey"),
                 read_adapters_openbookqa),
    _commonsense("winogrande", "winogrande/default.yaml", "validation", "winogrande",
                 ("sentence", "option1", "option2", "answer"), read_adapters_winogrande),
    _commonsense("piqa", "piqa/piqa.yaml", "validation", "piqa", ("goal", "sol1", "sol2", "label"), read_adapters_piqa),
    _commonsense("social_iqa", "siqa/siqa.yaml", "validation", "social_i_qa",
                 ("context", "question", "answerA", "answerB", "answerC", "label"), read_adapters_siqa),
    TaskSpec("boolq", "super_glue/boolq/default.yaml", "commonsense/boolq",
             {"validation": ("val.jsonl", "validation.jsonl", "test.json"), "train": ("train.jsonl",)},
             {".jsonl": hub_jsonl(("question", "passage"), boolq_doc), ".json": read_boolq_json}),
    TaskSpec("rte", "glue/rte/default.yaml", "glue/RTE", {"validation": ("dev.tsv", "validation.jsonl"),
                                                          "train": ("train.tsv", "train.jsonl")},
             {".tsv": read_glue_rte_tsv, ".jsonl": hub_jsonl(("sentence1", "sentence2", "label"), rte_doc)}),
    TaskSpec("hellaswag", "hellaswag/hellaswag.yaml", "hellaswag",
             {"validation": ("hellaswag_val.jsonl", "validation.jsonl"), "train": ("hellaswag_train.jsonl", "train.jsonl")},
             {".jsonl": hub_jsonl(("activity_label", "ctx_a", "ctx_b", "endings", "label"))}),
    TaskSpec("mmlu", "mmlu/default/_mmlu.yaml", "mmlu", {"test": ("test/{config}_test.csv",), "dev": ("dev/{config}_dev.csv",)},
             {".csv": read_mmlu_csv}),
    _gsm8k("gsm8k", "gsm8k/gsm8k.yaml"),
    _gsm8k("gsm8k_cot", "gsm8k/gsm8k-cot.yaml"),
    # code generation, scored by running the programs (code_tasks.py): opt-in with eval.allow_code_execution
    TaskSpec("humaneval", "humaneval/humaneval.yaml", "humaneval", {"test": ("test.jsonl", "HumanEval.jsonl")},
             {".jsonl": hub_jsonl(("task_id", "prompt", "canonical_solution", "test", "entry_point"))}),
    TaskSpec("mbpp", "mbpp/mbpp.yaml", "mbpp", {"test": ("test.jsonl", "mbpp.jsonl")}, {".jsonl": read_mbpp_jsonl}),
]}
LOCAL_TASK_NAMES = sorted(TASKS)


# ---- what lm-eval's YAML says: leaf tasks, their dataset configs and splits --------------------------------
def task_manager(names: list[str], copies: list[Path] = ()):
    """A TaskManager indexing only the lm-eval folders of `names` (a fraction of a second, not the full index),
    then `copies`: a later path's task of the same name overrides the earlier one."""
    from lm_eval.tasks import TaskManager

    root = lm_eval_tasks_dir()
    builtin = sorted({str((root / TASKS[n].builtin).parent) for n in names})
    index_log = logging.getLogger("lm_eval.tasks._index")
    level = index_log.level
    index_log.setLevel(logging.ERROR)  # "task X from <copy> overrides existing task": the point of the copies
    try:
        return TaskManager(include_defaults=False, include_path=[*builtin, *map(str, copies)])
    finally:
        index_log.setLevel(level)


def builtin_entry(manager, spec: TaskSpec):
    entry = manager.task_index.get(spec.name)
    expected = (lm_eval_tasks_dir() / spec.builtin).resolve()
    if entry is None or entry.yaml_path is None or Path(entry.yaml_path).resolve() != expected:
        raise ValueError(f"the installed lm-eval defines no {spec.name!r} in lm_eval/tasks/{spec.builtin} (found "
                         f"{getattr(entry, 'yaml_path', None)}); sparsetune's local tasks follow lm-eval 0.4.13's layout")
    return entry


def leaf_tasks(manager, name: str) -> list[str]:
    """The tasks a group (through its subgroups and tags) or a task stands for, in lm-eval's order."""
    entry = manager.task_index[name]
    if name in manager.all_tags:
        return sorted(entry.tags)
    if name in manager.all_groups:
        children = [c if isinstance(c, str) else c.get("task") or c.get("group") for c in entry.cfg.get("task", [])]
        return [leaf for child in children for leaf in leaf_tasks(manager, child)]
    return [name]


def fewshot_source(cfg: dict) -> str | None:
    """The split lm-eval draws few-shot examples from (None: examples written into the YAML)."""
    if cfg.get("fewshot_split"):
        return cfg["fewshot_split"]
    if (cfg.get("fewshot_config") or {}).get("samples") is not None:
        return None
    return cfg.get("training_split") or cfg.get("validation_split") or cfg.get("test_split")


# ---- local files -> a local copy of the hub dataset ------------------------------------------------------------
@dataclass
class LocalSuite:
    specs: dict[str, Path] = field(default_factory=dict)  # task name -> its YAML (in its local dataset copy)
    data: dict[str, dict] = field(default_factory=dict)  # task name -> lm-eval YAML, files, hashes, rows, dropped rows
    skipped: dict[str, str] = field(default_factory=dict)  # task name -> reason
    manager: object = None  # lm-eval TaskManager that knows the specs by their names


def read_source(spec: TaskSpec, path: Path) -> Converted:
    reader = spec.readers.get(path.suffix.lower())
    if reader is None:
        raise ValueError(f"{spec.name}: cannot read {path} (suffix {path.suffix!r}); accepted: {sorted(spec.readers)}")
    return reader(path)


def locate(spec: TaskSpec, data_dir: Path | None, override, configs: list[str], splits: list[str]) -> dict[str, dict[str, Path]]:
    """config -> split -> local file. `override` (eval.files.<task>): a file for the eval split, a folder standing
    in for <data_dir>/<folder>, or a {split: file} mapping."""
    explicit: dict[str, Path] = {}
    root = data_dir / spec.folder if data_dir else None
    if isinstance(override, Mapping):
        explicit = {s: Path(p).expanduser() for s, p in override.items()}
        unknown = sorted(set(explicit) - set(spec.layout))
        if unknown:
            raise ValueError(f"eval.files.{spec.name} names splits {unknown}; {spec.name}'s splits: {sorted(spec.layout)}")
    elif override:
        path = Path(override).expanduser()
        if path.is_dir():
            root = path
        else:
            explicit = {splits[0]: path}
    if explicit and len(configs) > 1:
        raise ValueError(f"eval.files.{spec.name} must be a folder: {spec.name} reads {len(configs)} dataset configs")
    for path in explicit.values():
        if not path.is_file():
            raise ValueError(f"eval.files.{spec.name}: {path} does not exist")
    found = {}
    for config in configs:
        found[config] = {}
        for split in splits:
            if split in explicit:
                found[config][split] = explicit[split]
                continue
            for rel in spec.layout.get(split, ()) if root else ():
                if (root / rel.format(config=config)).is_file():
                    found[config][split] = root / rel.format(config=config)
                    break
    return found


def _jsonl_bytes(docs: list[dict]) -> bytes:
    return "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs).encode("utf-8")


def _readme(task: str, files: dict[str, dict[str, str]]) -> str:
    card = {"configs": [{"config_name": config, "data_files": [{"split": s, "path": rel} for s, rel in splits.items()]}
                        for config, splits in files.items()]}
    return (f"---\n{yaml.safe_dump(card, sort_keys=False)}---\nsparsetune: local files converted to the hub's documents "
            f"for lm-eval's {task}.\n")


def write_dataset_copy(folder: Path, task: str, payloads: dict[str, dict[str, bytes]]) -> Path:
    """<folder>/<digest>/ with <config>/<split>.jsonl and the README card; content-addressed, so the same documents
    reuse the same folder and the datasets cache built from it."""
    digest = hashlib.sha256()
    for config, splits in payloads.items():
        for split, payload in splits.items():
            digest.update(f"{config}\0{split}\0{hashlib.sha256(payload).hexdigest()}\n".encode())
    final = folder / digest.hexdigest()[:16]
    if final.is_dir():
        return final
    tmp = folder / f"{final.name}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    files = {}
    for config, splits in payloads.items():
        (tmp / config).mkdir(parents=True)
        files[config] = {}
        for split, payload in splits.items():
            (tmp / config / f"{split}.jsonl").write_bytes(payload)
            files[config][split] = f"{config}/{split}.jsonl"
    (tmp / "README.md").write_text(_readme(task, files), encoding="utf-8")
    try:
        tmp.rename(final)
    except OSError:  # another process wrote the same content first
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def write_task_yaml(path: Path, builtin: Path, overrides: dict) -> None:
    text = ("# lm-eval's own task on local files: the include is the task; only dataset fields are overridden\n"
            + yaml.safe_dump({"include": str(builtin), **overrides}, sort_keys=False))
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def build_task(spec: TaskSpec, manager, data_dir: Path | None, override, work_dir: Path,
               num_fewshot: int | None) -> tuple[Path, dict]:
    """lm-eval's task `spec.name` pointed at its converted local files: (the task YAML, its data record)."""
    builtin_entry(manager, spec)
    leaves = [manager.task_index[leaf].cfg for leaf in leaf_tasks(manager, spec.name)]
    cfg = leaves[0]  # MMLU's subjects share one template: the same splits and shots
    configs = [leaf.get("dataset_name") or DEFAULT_CONFIG for leaf in leaves]
    eval_split = cfg.get("test_split") or cfg.get("validation_split")
    shots = num_fewshot if num_fewshot is not None else int(cfg.get("num_fewshot") or 0)
    shot_split = fewshot_source(cfg) if shots > 0 else None
    splits = [eval_split] + ([shot_split] if shot_split not in (None, eval_split) else [])
    found = locate(spec, data_dir, override, configs, splits)
    where = f"eval.data_dir={data_dir}" if data_dir else "no eval.data_dir"
    missing = [c for c in configs if eval_split not in found[c]]
    if missing:
        looked = ", ".join(spec.layout.get(eval_split, ()))
        what = f"for {len(missing)} of its {len(configs)} dataset configs ({', '.join(missing[:3])}, ...) " if len(configs) > 1 else ""
        raise UnusableData(f"no local file for {spec.name}'s {eval_split} split {what}under {spec.folder}/ ({where}; looked for "
                           f"{looked}); give one with eval.files.{spec.name}=<path>")
    if shot_split and any(shot_split not in found[c] for c in configs):
        raise ValueError(f"{spec.name} with num_fewshot={shots} draws examples from its {shot_split} split (as lm-eval does), "
                         f"but none was found under {spec.folder}/ ({where}; looked for {', '.join(spec.layout.get(shot_split, ()))}); "
                         f"give it with eval.files.{spec.name}={{{shot_split}: <path>}}")
    payloads, data = {}, {"source": {}, "format": {}, "rows": {}, "dropped": {}, "sha256": {}}
    for split in splits:
        digest, rows, dropped = hashlib.sha256(), 0, {}
        for config in configs:
            conv = read_source(spec, found[config][split])
            if not conv.docs:
                raise UnusableData(f"{found[config][split]} has no usable rows for {spec.name} (dropped: {conv.dropped})")
            payloads.setdefault(config, {})[split] = payload = _jsonl_bytes(conv.docs)
            digest.update(hashlib.sha256(payload).digest())
            rows += len(conv.docs)
            for reason, n in conv.dropped.items():
                dropped[reason] = dropped.get(reason, 0) + n
        paths = [found[c][split] for c in configs]
        data["source"][split] = str(paths[0] if len(paths) == 1 else os.path.commonpath(paths))
        data["format"][split], data["rows"][split], data["dropped"][split] = conv.fmt, rows, dropped
        data["sha256"][split] = digest.hexdigest()
    if len(configs) > 1:
        data["configs"] = len(configs)
    copy = write_dataset_copy(work_dir / spec.name, spec.name, payloads)
    overrides = {"dataset_path": str(copy),
                 "dataset_kwargs": {**(cfg.get("dataset_kwargs") or {}), "cache_dir": str(work_dir / "hf_datasets")}}
    overrides.update({key: None for key in SPLIT_KEYS if cfg.get(key) is not None and cfg[key] not in splits})
    task_yaml = copy / f"{spec.name}.yaml"  # the only YAML there: the manager indexes the folder
    write_task_yaml(task_yaml, lm_eval_tasks_dir() / spec.builtin, overrides)
    data.update(dataset_dir=str(copy), override_yaml=str(task_yaml), overrides=overrides)
    return task_yaml, data


def build_local_suite(names: list[str], data_dir: str | None, files: Mapping, work_dir: str | Path,
                      num_fewshot: Mapping[str, int | None], strict: bool = False) -> LocalSuite:
    """Convert and configure every named task; tasks without usable data are skipped with the reason
    (or raise, with strict=True)."""
    unknown = [n for n in names if n not in TASKS]
    if unknown:
        raise ValueError(f"no local definition for tasks {unknown}; local tasks: {LOCAL_TASK_NAMES}")
    root = Path(data_dir).expanduser() if data_dir else None
    if root is not None and not root.is_dir():
        raise ValueError(f"eval.data_dir={data_dir} is not a directory")
    work_dir = Path(work_dir).expanduser()
    builtin, suite = task_manager(names), LocalSuite()
    for name in names:
        try:
            suite.specs[name], suite.data[name] = build_task(TASKS[name], builtin, root, files.get(name), work_dir,
                                                             num_fewshot.get(name))
        except UnusableData as e:
            if strict:
                raise
            suite.skipped[name] = str(e)
    suite.manager = task_manager(list(suite.specs), [p.parent for p in suite.specs.values()])
    return suite
