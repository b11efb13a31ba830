"""Local lm-eval tasks: each source format converts to the hub's documents, the task is lm-eval's installed YAML
with only dataset fields overridden (no prompt, metric or subject list of ours), lm-eval renders its own prompts
on the converted documents, and unusable data is skipped with a reason."""
import csv
import json
from pathlib import Path

import pytest
import yaml
from lm_eval.tasks._yaml_loader import load_yaml

from sparsetune.evaluation.local_readers import UnusableData, read_arc_csv, split_context_question
from sparsetune.evaluation.local_tasks import (
    SPLIT_KEYS,
    TASKS,
    build_local_suite,
    leaf_tasks,
    lm_eval_tasks_dir,
    read_source,
    task_manager,
)

Q = "Please choose the correct answer to the question: "
DATASET_FIELDS = {"dataset_path", "dataset_name", "dataset_kwargs", *SPLIT_KEYS}


def adapters_mc(question: str, choices: list[str], answer: int) -> dict:
    opts = " ".join(f"Answer{i + 1}: {c}" for i, c in enumerate(choices))
    fmt = "/".join(f"answer{i + 1}" for i in range(len(choices)))
    return {"instruction": f"{Q}{question}\n\n{opts}\n\nAnswer format: {fmt}", "input": "",
            "output": f"the correct answer is answer{answer}", "answer": f"answer{answer}"}


ARC_TEST = [  # (question, choices, 1-based answer); short one-word choices, so length does not decide
    ("Which gas do plants absorb?", ["oxygen", "carbon", "helium", "neon"], 2),
    ("What melts ice fastest?", ["salt", "sand", "wood"], 1),
    ("Which is a mammal?", ["shark", "trout", "whale", "eel", "squid"], 3),
    ("What do bees make?", ["milk", "honey", "silk", "wax"], 2),
    ("Which tool measures mass?", ["ruler", "meter", "balance", "clock"], 3),
    ("What is frozen water called?", ["ice", "steam", "fog", "dew"], 1),
    ("Which organ pumps blood?", ["lung", "liver", "skin", "heart"], 4),
    ("Where does the sun rise?", ["north", "east", "south", "west"], 2),
]
ARC_TRAIN_CSV = [
    ["Which planet is largest?", "Earth", "Jupiter", "Mars", "Venus", "B"],
    ["Water boils at what temperature?", "50 C", "100 C", "", "", "2"],  # 2 choices, 1-based digit answer
    ["Rocks are classified according to", "", "", "", "", "3"],  # no choices -> dropped
    ["Pick the fifth option", "a", "b", "c", "d", "E"],  # answer outside the columns -> dropped
    ["Quoted, with a comma?", "x", "y", "", "w", "D"],  # an empty column in the middle
]
MMLU = {  # subject -> {split: rows}; every other subject of lm-eval's mmlu group gets one generic row per split
    "anatomy": {"dev": [["Which bone is in the arm?", "femur", "humerus", "tibia", "fibula", "B"]],
                "test": [["Which organ filters blood?", "kidney", "heart", "lung", "skin", "A"],
                         ["How many chambers has the heart?", "two", "three", "four", "five", "C"],
                         ["Which is a muscle?", "biceps", "radius", "ulna", "sternum", "A"]]},
    "virology": {"dev": [["What is a virion?", "a cell", "a virus particle", "a protein", "a gene", "B"]],
                 "test": [["Which virus causes flu?", "HIV", "influenza", "rabies", "measles", "B"],
                          ["Viruses are made of?", "fat", "sugar", "protein and nucleic acid", "salt", "C"]]},
}
GSM8K = [
    {"question": "Janet sells 9 eggs for $2 each. How much does she make?", "answer": "9 * 2 = <<9*2=18>>18\n#### 18"},
    {"question": "How many apples are in 1234 boxes of one apple?", "answer": "1234 * 1 = 1234\n#### 1,234"},
    {"question": "What is 2 + 3?", "answer": "2 + 3 = 5\n#### 5"},
]
RTE_TSV = "index\tsentence1\tsentence2\tlabel\n0\tA cat sat on the mat.\tAn animal sat.\tentailment\n" \
          "1\tIt rained all day.\tIt was dry.\tnot_entailment\n"


def mmlu_subjects() -> list[str]:
    """The subjects of lm-eval's own mmlu group, in its order."""
    manager = task_manager(["mmlu"])
    return [manager.task_index[t].cfg["dataset_name"] for t in leaf_tasks(manager, "mmlu")]


def mmlu_rows(subject: str, split: str) -> list[list[str]]:
    return MMLU.get(subject, {}).get(split) or [[f"A {split} question on {subject}?", "w", "x", "y", "z", "A"]]


def write_csv(path: Path, rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


HUMANEVAL = [  # (task_id, prompt, right body, wrong body, test, entry point)
    ("Toy/0", "def add(a, b):\n    \"\"\"Sum of a and b.\"\"\"\n", "    return a + b\n", "    return a * b\n",
     "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(0, 0) == 0\n", "add"),
    ("Toy/1", "def is_even(n):\n", "    return n % 2 == 0\n", "    return n % 2\n",
     "def check(candidate):\n    assert candidate(4) is True\n    assert candidate(3) is False\n", "is_even"),
    ("Toy/2", "def first(xs):\n", "    return xs[0]\n", "    return xs[-1]\n",
     "def check(candidate):\n    assert candidate([7, 8, 9]) == 7\n", "first"),
]
MBPP = [  # (task_id, text, right code, wrong code, tests)
    (11, "Write a function to double a number.", "def double(x):\n    return 2 * x", "def double(x):\n    return x",
     ["assert double(2) == 4", "assert double(0) == 0", "assert double(-1) == -2"]),
    (12, "Write a function to reverse a string.", "def rev(s):\n    return s[::-1]", "def rev(s):\n    return s",
     ["assert rev('ab') == 'ba'", "assert rev('') == ''", "assert rev('abc') == 'cba'"]),
]


def write_code_data(root: Path) -> Path:
    """HumanEval's file with the right bodies as canonical solutions; the original mbpp.jsonl (every split:
    task 601 is from the train split and must be dropped)."""
    write_jsonl(root / "humaneval" / "HumanEval.jsonl",
                [{"task_id": t, "prompt": p, "canonical_solution": right, "test": test, "entry_point": e}
                 for t, p, right, _, test, e in HUMANEVAL])
    write_jsonl(root / "mbpp" / "mbpp.jsonl",
                [{"task_id": t, "text": text, "code": right, "test_list": tests, "test_setup_code": "", "challenge_test_list": []}
                 for t, text, right, _, tests in [*MBPP, (601, "Train-split task.", "x = 1", "", ["assert True"] * 3)]])
    return root


def write_data_dir(root: Path) -> Path:
    """A miniature ../shared/data: the same layout and formats, a handful of rows each."""
    cs = root / "commonsense"
    for arc in ("ARC-Easy", "ARC-Challenge"):
        write_json(cs / arc / "test.json", [adapters_mc(q, c, a) for q, c, a in ARC_TEST])
    write_csv(cs / "ARC-Easy/train.csv", ARC_TRAIN_CSV)
    write_json(cs / "openbookqa/test.json", [adapters_mc("Fog is most likely around", ["a marsh", "a desert", "the moon", "a fire"], 1)])
    write_json(cs / "winogrande/test.json", [{
        "instruction": "Please choose the correct answer to fill in the blank to complete the given sentence: Sarah was a "
                       "better surgeon than Maria so _ got the easier cases.\n\nOption1: Sarah Option2: Maria Answer format: "
                       "option1/option2", "input": "", "output": "the correct answer is option2", "answer": "option2"}])
    write_json(cs / "piqa/test.json", [{
        "instruction": "Please choose the correct solution to the question: How do I dry a wet phone?\n\nSolution1: Put it "
                       "in rice.\n\nSolution2: Put it in water.\n\nAnswer format: solution1/solution2",
        "input": "", "output": "the correct answer is solution1", "answer": "solution1"}])
    write_json(cs / "social_i_qa/test.json", [adapters_mc(
        "Tracy didn't go home. She stayed out. What does Tracy need to do before this?",
        ["make a plan", "go home", "find a place"], 3)])
    write_json(cs / "boolq/test.json", [{
        "instruction": "Please answer the following question with true or false, question: is the sky blue?\n\n"
                       "Answer format: true/false", "input": "", "output": "the correct answer is true", "answer": "true"}])
    (root / "glue/RTE").mkdir(parents=True)
    (root / "glue/RTE/dev.tsv").write_text(RTE_TSV, encoding="utf-8")
    for subject in mmlu_subjects():
        for split in ("dev", "test"):
            write_csv(root / "mmlu" / split / f"{subject}_{split}.csv", mmlu_rows(subject, split))
    write_jsonl(root / "gsm8k/test.jsonl", GSM8K)
    write_jsonl(root / "gsm8k/train.jsonl", list(reversed(GSM8K)))
    return write_code_data(root)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_data_dir(tmp_path_factory.mktemp("data"))


def docs_of(suite, name: str, split: str, config: str | None = None) -> list[dict]:
    copy = Path(suite.data[name]["dataset_dir"])
    config = config or next(p.name for p in copy.iterdir() if p.is_dir())
    return [json.loads(line) for line in (copy / config / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()]


def loaded(suite, name: str):
    """The task (or group) lm-eval builds from the suite, by its lm-eval name."""
    out = suite.manager.load(name)
    return out["groups"].get(name) or out["tasks"][name]


def test_arc_from_llm_adapters_json_and_csv(data_dir, tmp_path):
    suite = build_local_suite(["arc_easy"], str(data_dir), {}, tmp_path / "work", {"arc_easy": 1})
    test = docs_of(suite, "arc_easy", "test", "ARC-Easy")  # lm-eval's own dataset_name picks the config
    assert test[0] == {"id": "ARC-Easy-0", "question": "Which gas do plants absorb?",
                       "choices": {"text": ["oxygen", "carbon", "helium", "neon"], "label": ["A", "B", "C", "D"]},
                       "answerKey": "B"}
    assert test[1]["choices"] == {"text": ["salt", "sand", "wood"], "label": ["A", "B", "C"]} and test[1]["answerKey"] == "A"
    assert test[2]["choices"]["label"] == ["A", "B", "C", "D", "E"] and test[2]["answerKey"] == "C"
    train = docs_of(suite, "arc_easy", "train")
    assert [(d["question"], d["choices"], d["answerKey"]) for d in train] == [
        ("Which planet is largest?", {"text": ["Earth", "Jupiter", "Mars", "Venus"], "label": ["A", "B", "C", "D"]}, "B"),
        ("Water boils at what temperature?", {"text": ["50 C", "100 C"], "label": ["A", "B"]}, "B"),
        ("Quoted, with a comma?", {"text": ["x", "y", "w"], "label": ["A", "B", "D"]}, "D"),
    ]
    data = suite.data["arc_easy"]
    assert data["rows"] == {"test": 8, "train": 3} and data["format"] == {"test": "llm-adapters json", "train": "arc csv"}
    assert data["dropped"]["train"] == {"no choices": 1, "answer not among the choices": 1} and len(data["sha256"]["test"]) == 64
    # the task YAML: lm-eval's arc_easy.yaml included, the dataset pointed at the copy, the split without a file unset
    written = yaml.safe_load(Path(data["override_yaml"]).read_text())
    assert written["include"] == str(lm_eval_tasks_dir() / "arc/arc_easy.yaml")
    assert written["dataset_path"] == data["dataset_dir"] and written["validation_split"] is None
    assert set(written) - {"include"} <= DATASET_FIELDS and "training_split" not in written
    task = loaded(suite, "arc_easy")
    assert task.config.test_split == "test" and task.config.training_split == "train" and task.VERSION == 1.0


@pytest.mark.parametrize("name", sorted(TASKS))
def test_written_yaml_is_lm_eval_yaml_with_only_dataset_fields_changed(name, data_dir, tmp_path):
    files = {"boolq": str(write_jsonl(tmp_path / "boolq.jsonl", [{"question": "q", "passage": "p", "label": 1}])),
             "hellaswag": str(write_jsonl(tmp_path / "hs.jsonl", [{"activity_label": "A", "ctx_a": "x", "ctx_b": "y", "ctx": "x y",
                                                                   "endings": ["a", "b", "c", "d"], "label": "0"}]))}
    suite = build_local_suite([name], str(data_dir), {k: v for k, v in files.items() if k == name}, tmp_path / "work", {})
    ours = load_yaml(suite.specs[name], resolve_func=False)
    builtin = load_yaml(lm_eval_tasks_dir() / TASKS[name].builtin, resolve_func=False)
    changed = {k for k in set(ours) | set(builtin) if ours.get(k) != builtin.get(k)}
    assert changed <= DATASET_FIELDS and "dataset_path" in changed


def test_multiple_choice_formats_become_hub_documents(data_dir, tmp_path):
    names = ["openbookqa", "winogrande", "piqa", "social_iqa", "rte"]
    suite = build_local_suite(names, str(data_dir), {}, tmp_path / "work", {})
    assert suite.skipped == {}
    assert docs_of(suite, "openbookqa", "test") == [{
        "id": "openbookqa-0", "question_stem": "Fog is most likely around",
        "choices": {"text": ["a marsh", "a desert", "the moon", "a fire"], "label": ["A", "B", "C", "D"]}, "answerKey": "A"}]
    assert docs_of(suite, "winogrande", "validation") == [{
        "sentence": "Sarah was a better surgeon than Maria so _ got the easier cases.", "option1": "Sarah",
        "option2": "Maria", "answer": "2"}]
    assert docs_of(suite, "piqa", "validation") == [{
        "goal": "How do I dry a wet phone?", "sol1": "Put it in rice.", "sol2": "Put it in water.", "label": 0}]
    assert docs_of(suite, "social_iqa", "validation") == [{
        "context": "Tracy didn't go home. She stayed out.", "question": "What does Tracy need to do before this?",
        "answerA": "make a plan", "answerB": "go home", "answerC": "find a place", "label": "3"}]
    assert docs_of(suite, "rte", "validation") == [
        {"sentence1": "A cat sat on the mat.", "sentence2": "An animal sat.", "label": 0, "idx": 0},
        {"sentence1": "It rained all day.", "sentence2": "It was dry.", "label": 1, "idx": 1}]
    assert split_context_question("no sentence end here") == ("no sentence end", "here")


def test_lm_eval_renders_its_own_prompts_on_converted_documents(data_dir, tmp_path):
    names = ["arc_easy", "openbookqa", "winogrande", "piqa", "social_iqa", "rte"]
    suite = build_local_suite(names, str(data_dir), {}, tmp_path / "work", {})

    def first(name):
        task = loaded(suite, name)
        doc = task.eval_docs[0]
        return task.doc_to_text(doc), task.doc_to_choice(doc), task.doc_to_target(doc)

    text, choices, gold = first("arc_easy")
    assert "Which gas do plants absorb?" in text and choices == ["oxygen", "carbon", "helium", "neon"] and gold == 1
    text, choices, gold = first("openbookqa")
    assert "Fog is most likely around" in text and choices == ["a marsh", "a desert", "the moon", "a fire"] and gold == 0
    text, choices, gold = first("piqa")
    assert "How do I dry a wet phone?" in text and choices == ["Put it in rice.", "Put it in water."] and gold == 0
    text, choices, gold = first("social_iqa")
    assert "Tracy didn't go home. She stayed out. What does Tracy need to do before this?" in text
    assert choices == ["make a plan", "go home", "find a place"] and gold == 2
    text, choices, gold = first("rte")
    assert "A cat sat on the mat." in text and "An animal sat." in text and len(choices) == 2 and gold == 0
    # winogrande scores the sentence's tail after each filled-in prefix (lm-eval's partial evaluation)
    assert first("winogrande") == (1, ["Sarah was a better surgeon than Maria so Sarah",
                                       "Sarah was a better surgeon than Maria so Maria"], "got the easier cases.")


def test_mmlu_is_lm_eval_mmlu_group_on_local_subject_files(data_dir, tmp_path):
    suite = build_local_suite(["mmlu"], str(data_dir), {}, tmp_path / "work", {"mmlu": 1})
    data = suite.data["mmlu"]
    subjects = mmlu_subjects()
    assert len(subjects) == 57 and data["configs"] == 57
    assert data["rows"] == {"test": 57 - 2 + 5, "dev": 57} and data["source"]["test"] == str(data_dir / "mmlu/test")
    mmlu = loaded(suite, "mmlu")
    assert [g.name for g in mmlu] == ["mmlu_stem", "mmlu_other", "mmlu_social_sciences", "mmlu_humanities"]
    assert len(mmlu.get_all_tasks()) == 57
    anatomy = next(t for t in mmlu.get_all_tasks() if t.task_name == "mmlu_anatomy")
    doc = anatomy.eval_docs[1]
    context = anatomy.fewshot_context(doc, num_fewshot=1)  # lm-eval's first_n sampler: the first dev row
    assert context.index("Which bone is in the arm?") < context.index("How many chambers has the heart?")
    assert context.startswith(anatomy.config.description) and "anatomy" in anatomy.config.description
    assert anatomy.doc_to_target(doc) == 2 and anatomy.doc_to_choice(doc) == ["A", "B", "C", "D"]
    assert docs_of(suite, "mmlu", "test", "virology")[1] == {"question": "Viruses are made of?", "subject": "virology",
                                                            "choices": ["fat", "sugar", "protein and nucleic acid", "salt"],
                                                            "answer": 2}


def test_mmlu_without_every_subject_is_skipped_naming_them(data_dir, tmp_path):
    partial = tmp_path / "mmlu"
    for split in ("dev", "test"):
        write_csv(partial / split / f"anatomy_{split}.csv", mmlu_rows("anatomy", split))
    suite = build_local_suite(["mmlu"], None, {"mmlu": str(partial)}, tmp_path / "work", {})
    assert "56 of its 57 dataset configs" in suite.skipped["mmlu"] and "abstract_algebra" in suite.skipped["mmlu"]


def test_gsm8k_and_gsm8k_cot_read_the_hub_schema_jsonl(data_dir, tmp_path):
    suite = build_local_suite(["gsm8k", "gsm8k_cot"], str(data_dir), {}, tmp_path / "work", {})
    assert suite.data["gsm8k"]["rows"] == {"test": 3, "train": 3}  # lm-eval's 5 shots come from train
    assert suite.data["gsm8k_cot"]["rows"] == {"test": 3}  # its exemplars are in lm-eval's YAML
    for name in ("gsm8k", "gsm8k_cot"):
        task = loaded(suite, name)
        doc = task.eval_docs[1]
        assert GSM8K[1]["question"] in task.doc_to_text(doc) and task.OUTPUT_TYPE == "generate_until"
        assert task.VERSION == 3.0
    assert loaded(suite, "gsm8k_cot").doc_to_target(loaded(suite, "gsm8k_cot").eval_docs[1]) == "1,234"
    bad = write_jsonl(tmp_path / "bad.jsonl", [GSM8K[0], {"question": "q", "answer": "no final number"}])
    with pytest.raises(ValueError, match="bad.jsonl line 2.*####"):
        build_local_suite(["gsm8k_cot"], None, {"gsm8k_cot": str(bad)}, tmp_path / "work", {})
    zero = build_local_suite(["gsm8k"], None, {"gsm8k": {"test": str(data_dir / "gsm8k/test.jsonl")}}, tmp_path / "work",
                             {"gsm8k": 0})
    assert zero.data["gsm8k"]["rows"] == {"test": 3} and zero.data["gsm8k"]["overrides"]["training_split"] is None
    with pytest.raises(ValueError, match="train split"):
        build_local_suite(["gsm8k"], None, {"gsm8k": str(data_dir / "gsm8k/test.jsonl")}, tmp_path / "work", {})


def test_same_documents_reuse_the_same_copy(data_dir, tmp_path):
    one = build_local_suite(["rte"], str(data_dir), {}, tmp_path / "work", {})
    two = build_local_suite(["rte"], str(data_dir), {}, tmp_path / "work", {})
    copy = Path(one.data["rte"]["dataset_dir"])
    assert copy == Path(two.data["rte"]["dataset_dir"]) and copy.parent == tmp_path / "work" / "rte"
    card = yaml.safe_load((copy / "README.md").read_text().split("---")[1])
    assert card == {"configs": [{"config_name": "rte", "data_files": [{"split": "validation", "path": "rte/validation.jsonl"}]}]}
    assert sorted(p.name for p in copy.iterdir()) == ["README.md", "rte", "rte.yaml"]


def test_unusable_or_missing_data_is_skipped_with_the_reason(data_dir, tmp_path):
    suite = build_local_suite(["boolq", "hellaswag", "rte"], str(data_dir), {}, tmp_path / "work", {})
    assert set(suite.skipped) == {"boolq", "hellaswag"} and "rte" in suite.specs
    assert "without their passages" in suite.skipped["boolq"] and "eval.files.boolq" in suite.skipped["boolq"]
    assert "hellaswag_val.jsonl" in suite.skipped["hellaswag"] and "eval.files.hellaswag" in suite.skipped["hellaswag"]
    with pytest.raises(UnusableData, match="passages"):
        build_local_suite(["boolq"], str(data_dir), {}, tmp_path / "work", {}, strict=True)


def test_passage_bearing_boolq_and_hub_schema_hellaswag_are_used(data_dir, tmp_path):
    boolq = write_jsonl(tmp_path / "val.jsonl", [
        {"question": "is the sky blue", "passage": "The sky is blue.", "label": True, "idx": 0},
        {"question": "do fish fly", "passage": "Fish swim.", "answer": False}])
    hella = write_jsonl(tmp_path / "hellaswag_val.jsonl", [{
        "ind": 4, "activity_label": "Cooking", "ctx_a": "A man cracks eggs.", "ctx_b": "he", "ctx": "A man cracks eggs. he",
        "endings": ["whisks them [title] fast.", "sleeps.", "flies.", "sings."], "label": "0"}])
    suite = build_local_suite(["boolq", "hellaswag"], str(data_dir), {"boolq": str(boolq), "hellaswag": str(hella)},
                              tmp_path / "work", {})
    assert suite.skipped == {}
    assert [d["label"] for d in docs_of(suite, "boolq", "validation")] == [1, 0]
    task = loaded(suite, "boolq")
    doc = task.eval_docs[0]
    assert task.doc_to_text(doc).startswith("The sky is blue.") and task.doc_to_target(doc) == 1
    task = loaded(suite, "hellaswag")
    doc = task.eval_docs[0]  # lm-eval's own process_docs: label prefix, capitalised ctx_b, [title] -> ". "
    assert task.doc_to_text(doc) == "Cooking: A man cracks eggs. He"
    assert task.doc_to_choice(doc) == ["whisks them. fast.", "sleeps.", "flies.", "sings."] and task.doc_to_target(doc) == 0
    broken = write_jsonl(tmp_path / "broken.jsonl", [{"ctx_a": "x"}])
    with pytest.raises(ValueError, match="missing fields"):
        build_local_suite(["hellaswag"], None, {"hellaswag": str(broken)}, tmp_path / "work", {})


def test_bad_requests_fail_early(data_dir, tmp_path):
    with pytest.raises(ValueError, match="no local definition"):
        build_local_suite(["arc_easy", "gsm8k_plus"], str(data_dir), {}, tmp_path, {})
    with pytest.raises(ValueError, match="train split"):  # winogrande has no local train split for examples
        build_local_suite(["winogrande"], str(data_dir), {}, tmp_path, {"winogrande": 2})
    with pytest.raises(ValueError, match="not a directory"):
        build_local_suite(["rte"], str(data_dir / "nope"), {}, tmp_path, {})
    with pytest.raises(ValueError, match="names splits \\['dev'\\]"):
        build_local_suite(["rte"], None, {"rte": {"dev": str(data_dir / "glue/RTE/dev.tsv")}}, tmp_path, {})
    with pytest.raises(ValueError, match="must be a folder"):
        build_local_suite(["mmlu"], None, {"mmlu": str(data_dir / "mmlu/test/anatomy_test.csv")}, tmp_path, {})
    with pytest.raises(ValueError, match="answer-letter"):
        bad = tmp_path / "bad"
        for subject in mmlu_subjects():
            write_csv(bad / "test" / f"{subject}_test.csv", [["q", "a", "b", "c", "d", "Z"]])
        build_local_suite(["mmlu"], None, {"mmlu": str(bad)}, tmp_path, {})
    bad_arc = tmp_path / "arc.csv"
    write_csv(bad_arc, [["only", "three", "columns"]])
    with pytest.raises(ValueError, match="6 columns"):
        read_arc_csv(bad_arc)
    with pytest.raises(ValueError, match="cannot read"):
        read_source(TASKS["rte"], tmp_path / "rte.parquet")
