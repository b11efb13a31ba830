"""task=oasst2: threading OASST2 message trees (rank choice, branches, deleted replies, languages), the
guanaco and chat-template renderings, loss on the last reply only, local files loaded lazily, bad rows
named by file and line, and a tiny end-to-end run through train.py."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import CONF, compose_cfg
from data_files import jsonl

from sparsetune.errors import ConfigError
from sparsetune.tasks import local_files
from sparsetune.tasks.causal_lm import IGNORE_INDEX
from sparsetune.tasks.conversations import best_threads, chat_pair, guanaco_pair
from sparsetune.tasks.errors import DataError
from sparsetune.tasks.oasst import conversations, load_oasst2, message_splits
from sparsetune.tasks.preflight import check_data
from sparsetune.tiny_tokenizer import bytelevel_tokenizer

ROOT = Path(CONF).parent


def msg(mid, parent, role, text, rank=None, lang="en", **extra):
    return {"message_id": mid, "parent_id": parent, "role": role, "text": text, "rank": rank, "lang": lang,
            "deleted": False, "review_result": True, "message_tree_id": "t", **extra}


# tree a: two ranked replies (rank 1 listed first), a follow-up with a ranked and an unranked reply;
# tree b: the best reply was deleted; tree c: no reply; tree d: German; tree e ends with a prompt.
MESSAGES = [
    msg("a", None, "prompter", "What is a tree?"),
    msg("a1", "a", "assistant", "A plant.", rank=1),
    msg("a0", "a", "assistant", "A tall woody plant.", rank=0),
    msg("a0p", "a0", "prompter", "Give an example."),
    msg("a0p-x", "a0p", "assistant", "Unranked reply."),
    msg("a0p-0", "a0p", "assistant", "An oak.", rank=0),
    msg("b", None, "prompter", "Say hi."),
    msg("b0", "b", "assistant", "Deleted reply.", rank=0, deleted=True),
    msg("b1", "b", "assistant", "Hi!", rank=1),
    msg("c", None, "prompter", "Nobody answered this."),
    msg("d", None, "prompter", "Wie geht's?", lang="de"),
    msg("d0", "d", "assistant", "Gut.", lang="de", rank=0),
    msg("e", None, "prompter", "Count to two."),
    msg("e0", "e", "assistant", "One, two.", rank=0),
    msg("e0p", "e0", "prompter", "Thanks!", rank=0),
]


def threads_of(messages, languages=None):
    cols = {k: [m.get(k) for m in messages] for k in ("message_id", "parent_id", "role", "rank", "lang")}
    usable = [not m.get("deleted") and m.get("review_result") is not False for m in messages]
    paths, counts = best_threads(cols["message_id"], cols["parent_id"], cols["role"], cols["rank"], usable, cols["lang"],
                                 languages)
    return [[messages[i]["message_id"] for i in p] for p in paths], counts


@pytest.fixture(scope="module")
def tok():
    return bytelevel_tokenizer()


def chat_tokenizer(bos: bool = False):
    t = bytelevel_tokenizer()
    t.chat_template = (("{{ bos_token }}" if bos else "") + "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}"
                       "{{ eos_token }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
    return t


def test_best_thread_follows_rank_zero_skips_deleted_and_ends_at_the_last_reply():
    threads, counts = threads_of(MESSAGES)
    assert threads == [["a", "a0", "a0p", "a0p-0"], ["b", "b1"], ["d", "d0"], ["e", "e0"]]
    assert counts == {"trees": 5, "threads": 4, "without_reply": 1, "other_language": 0}
    english, counts = threads_of(MESSAGES, {"en"})
    assert ["d", "d0"] not in english and counts["other_language"] == 1 and counts["threads"] == 3
    # unranked replies come after ranked ones, then file order; a rejected review is not followed
    unranked = [msg("r", None, "prompter", "q"), msg("r2", "r", "assistant", "x"), msg("r1", "r", "assistant", "y"),
                msg("r3", "r", "assistant", "z", rank=2, review_result=False)]
    assert threads_of(unranked)[0] == [["r", "r2"]]


def test_guanaco_rendering_splits_before_the_last_reply():
    prompt, target = guanaco_pair(["prompter", "assistant", "prompter", "assistant"], ["Hi", "Hello!", "How?", "Fine."])
    assert prompt == "### Human: Hi### Assistant: Hello!### Human: How?### Assistant:"
    assert target == " Fine."


def test_chat_template_rendering_is_the_template_split_at_the_reply():
    t = chat_tokenizer()
    prompt, target = chat_pair(t, ["prompter", "assistant", "prompter", "assistant"], ["Hi", "Hello!", "How?", "Fine."])
    assert prompt == "<|user|>\nHi</s>\n<|assistant|>\nHello!</s>\n<|user|>\nHow?</s>\n<|assistant|>\n"
    assert target == "Fine.</s>"  # the template's end of turn, trailing newline dropped
    t.chat_template = "{% for m in messages %}{{ m['content'] | upper }} {% endfor %}"  # no generation prompt to split at
    assert chat_pair(t, ["prompter", "assistant"], ["a", "b"]) == ("A ", "B")
    t.chat_template = "{{ messages | length }}"
    with pytest.raises(ConfigError, match="prompt_format=guanaco"):
        chat_pair(t, ["prompter", "assistant"], ["a", "b"])


def labelled_text(tok, ex) -> tuple[str, str]:
    n = sum(1 for lab in ex["labels"] if lab == IGNORE_INDEX)
    assert ex["labels"][:n] == [IGNORE_INDEX] * n and IGNORE_INDEX not in ex["labels"][n:]
    return tok.decode(ex["input_ids"][:n]), tok.decode(ex["input_ids"][n:])


def test_guanaco_examples_have_loss_on_the_reply_only(tok, tmp_path):
    train = jsonl(tmp_path / "oasst2.jsonl", MESSAGES)
    cfg = compose_cfg(["task=oasst2", f"+task.data_files.train={train}", "task.options.val_set_size=1",
                       "task.options.train_subset=first", "task.options.split_seed=0"])
    data = load_oasst2(cfg.task, tok, seed=0)
    assert tok.chat_template is None and data.info["prompt_template"] == "guanaco"
    assert data.info["threads"] == {"train": {"trees": 5, "threads": 4, "without_reply": 1, "other_language": 0}}
    assert data.info["num_train"] == 3 and data.info["num_eval"] == {"validation": 1} and data.info["eos"] is True
    texts = {labelled_text(tok, ex) for ex in [*data.train, *data.eval["validation"]]}
    assert ("### Human: What is a tree?### Assistant: A tall woody plant.### Human: Give an example.### Assistant:",
            " An oak.</s>") in texts
    assert ("### Human: Say hi.### Assistant:", " Hi!</s>") in texts


def test_chat_template_examples_keep_one_bos_and_one_eos(tmp_path):
    t = chat_tokenizer(bos=True)
    train = jsonl(tmp_path / "oasst2.jsonl", MESSAGES)
    valid = jsonl(tmp_path / "valid.jsonl", MESSAGES[6:9])
    cfg = compose_cfg(["task=oasst2", f"task.data_files={{train: {train}, validation: {valid}}}", "task.options.languages=[en]"])
    data = load_oasst2(cfg.task, t, seed=0)
    info = data.info
    assert info["prompt_template"] == "chat_template" and info["template_writes_bos"] and info["template_ends_reply_with_eos"]
    assert info["bos"] is True and info["eos"] is False and info["eval_carved_from_train"] is None
    assert info["num_train"] == 3 and info["threads"]["train"]["other_language"] == 1
    ex = data.eval["validation"][0]
    assert ex["input_ids"].count(t.bos_token_id) == 1 and ex["input_ids"][0] == t.bos_token_id
    assert ex["input_ids"].count(t.eos_token_id) == 2 and ex["input_ids"][-1] == t.eos_token_id  # prompt's turn end + reply's
    assert labelled_text(t, ex) == ("<s><|user|>\nSay hi.</s>\n<|assistant|>\n", "Hi!</s>")


def test_local_parquet_is_loaded_lazily_and_threads_are_cached_as_arrow(tok, tmp_path, monkeypatch):
    path = tmp_path / "oasst2.parquet"
    pq.write_table(pa.Table.from_pylist(MESSAGES), path)
    monkeypatch.setattr(local_files, "_read_records", lambda p: pytest.fail(f"{p} was read into Python lists"))
    cfg = compose_cfg(["task=oasst2", f"+task.data_files.train={path}"])
    messages, source = message_splits(cfg.task, ["train", "validation"])
    assert list(messages) == ["train"] and source.startswith("files")
    assert messages["train"].cache_files and len(messages["train"]) == len(MESSAGES)
    convs, counts = conversations(messages["train"], None)
    assert convs.cache_files and counts["threads"] == 4
    assert convs[0] == {"roles": ["prompter", "assistant", "prompter", "assistant"], "lang": "en",
                        "texts": ["What is a tree?", "A tall woody plant.", "Give an example.", "An oak."]}
    again, _ = conversations(messages["train"], None)
    assert again._fingerprint == convs._fingerprint  # the same messages give the same cached threads


def test_bad_rows_are_named_by_file_and_line_and_options_are_checked(tok, tmp_path):
    bad = jsonl(tmp_path / "bad.jsonl", [*MESSAGES[:3], {**MESSAGES[3], "role": "user"}])
    cfg = compose_cfg(["task=oasst2", f"+task.data_files.train={bad}"])
    with pytest.raises(DataError, match=r"bad.jsonl:4: column 'role' holds 'user'; expected one of \['prompter', 'assistant'\]"):
        load_oasst2(cfg.task, tok, 0)
    with pytest.raises(DataError, match=r"bad.jsonl:4: column 'role' holds 'user'"):
        check_data(cfg)  # the CLI's preflight, on the file's first rows
    rank = jsonl(tmp_path / "rank.jsonl", [MESSAGES[0], {**MESSAGES[1], "rank": "best"}])
    with pytest.raises(DataError, match=r"rank.jsonl:2: column 'rank' holds 'best'"):
        load_oasst2(compose_cfg(["task=oasst2", f"+task.data_files.train={rank}"]).task, tok, 0)
    good = jsonl(tmp_path / "good.jsonl", MESSAGES)
    for option, message in (("prompt_format=chatml", "prompt_format='chatml'; allowed: auto, chat_template, guanaco"),
                            ("prompt_format=chat_template", "tokenizer has no chat template"),
                            ("languages=[xx]", "no conversation with an assistant reply"),
                            ("languages=en", "a non-empty list")):
        with pytest.raises(ConfigError, match=message):
            load_oasst2(compose_cfg(["task=oasst2", f"+task.data_files.train={good}", f"task.options.{option}"]).task, tok, 0)
    dup = jsonl(tmp_path / "dup.jsonl", [*MESSAGES, MESSAGES[0]])
    with pytest.raises(ConfigError, match="message_id 'a' occurs more than once"):
        load_oasst2(compose_cfg(["task=oasst2", f"+task.data_files.train={dup}"]).task, tok, 0)


def test_the_preflight_names_a_bad_head_row_without_torch_or_datasets(tmp_path):
    bad = jsonl(tmp_path / "bad.jsonl", [MESSAGES[0], {**MESSAGES[1], "deleted": "no"}])
    code = textwrap.dedent(f"""
        import sys
        from hydra import compose, initialize_config_dir
        import sparsetune.schema
        from sparsetune.tasks.preflight import check_data
        sparsetune.schema.register()
        with initialize_config_dir(config_dir={CONF!r}, version_base="1.3"):
            cfg = compose(config_name="train", overrides=["task=oasst2", "+task.data_files.train={bad}"])
        try:
            check_data(cfg)
        except ValueError as e:
            print(e)
        print(sorted(m for m in ("torch", "transformers", "datasets") if m in sys.modules))
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.stdout.splitlines() == [f"{bad}:2: column 'deleted' holds 'no'; expected true, false or null", "[]"], proc.stderr


def test_no_local_data_and_no_hub_names_the_local_option(tok):
    from sparsetune.hub import OfflineError

    with pytest.raises(OfflineError, match="task.data_files"):
        load_oasst2(compose_cfg(["task=oasst2"]).task, tok, 0)


def test_tiny_llama_oasst2_run_through_train_py(tmp_path):
    train = jsonl(tmp_path / "oasst2.jsonl", MESSAGES)
    valid = jsonl(tmp_path / "valid.jsonl", MESSAGES[:6])
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "train.py", "model=tiny-llama", "debug=fast", "method=full", "task=oasst2",
                           f"task.data_files={{train: {train}, validation: {valid}}}", "task.max_length=200", "train.max_steps=3",
                           "train.batch_size=2", "train.eval_strategy=steps", "train.eval_steps=3", "export=false",
                           f"hydra.run.dir={run_dir}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rec = json.loads((run_dir / "results.json").read_text())
    assert rec["status"] == "completed" and rec["data"]["prompt_template"] == "guanaco"
    assert rec["data"]["num_train"] == 4 and rec["data"]["num_eval"] == {"validation": 1}
    assert rec["metrics"]["eval"]["loss"] > 0 and rec["metrics"]["train_loss"] > 0
