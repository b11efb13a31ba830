"""Local lm-eval tasks: each source format converts to the hub's documents, the prompts are lm-eval's own
(checked field by field against the installed built-in YAML), and unusable data is skipped with a reason."""
import csv
import json
from pathlib import Path

import lm_eval.tasks
import pytest
from lm_eval.tasks._yaml_loader import load_yaml

from sparsetune.evaluation.harness import to_lm_eval
from sparsetune.evaluation.local_tasks import (
    MMLU_CATEGORIES,
    MMLU_GROUP_VERSION,
    MMLU_TEMPLATE,
    TASKS,
    UnusableData,
    build_local_suite,
    mmlu_description,
    read_arc_csv,
    read_source,
    split_context_question,
)

LM_EVAL_TASKS = Path(lm_eval.tasks.__file__).parent
Q = "Please choose the correct answer to the question: "


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
MMLU = {  # subject -> {split: rows}
    "anatomy": {"dev": [["Which bone is in the arm?", "femur", "humerus", "tibia", "fibula", "B"]],
                "test": [["Which organ filters blood?", "kidney", "heart", "lung", "skin", "A"],
                         ["How many chambers has the heart?", "two", "three", "four", "five", "C"],
                         ["Which is a muscle?", "biceps", "radius", "ulna", "sternum", "A"]]},
    "virology": {"dev": [["What is a virion?", "a cell", "a virus particle", "a protein", "a gene", "B"]],
                 "test": [["Which virus causes flu?", "HIV", "influenza", "rabies", "measles", "B"],
                          ["Viruses are made of?", "fat", "sugar", "protein and nucleic acid", "salt", "C"]]},
}
RTE_TSV = "index\tsentence1\tsentence2\tlabel\n0\tA cat sat on the mat.\tAn animal sat.\tentailment\n" \
          "1\tIt rained all day.\tIt was dry.\tnot_entailment\n"


def write_csv(path: Path, rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")


def write_data_dir(root: Path) -> Path:
    """A miniature ../shared/data: the same layout and formats, a handful of rows each."""
    cs = root / "commonsense"
    write_json(cs / "ARC-Easy/test.json", [adapters_mc(q, c, a) for q, c, a in ARC_TEST])
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
    for subject, splits in MMLU.items():
        for split, rows in splits.items():
            write_csv(root / "mmlu" / split / f"{subject}_{split}.csv", rows)
    return root


@pytest.fixture
def data_dir(tmp_path):
    return write_data_dir(tmp_path / "data")


def docs_of(suite, name: str, split: str) -> list[dict]:
    path = suite.data[name]["converted"][split]
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def test_arc_from_llm_adapters_json_and_csv(data_dir, tmp_path):
    suite = build_local_suite(["arc_easy"], str(data_dir), {}, tmp_path / "work", {"arc_easy": 1})
    test = docs_of(suite, "arc_easy", "test")
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
    assert data["rows"] == {"test": 8, "train": 3}
    assert data["dropped"]["train"] == {"no choices": 1, "answer not among the choices": 1}
    assert data["template"] == "lm_eval/tasks/arc/arc_easy.yaml" and len(data["sha256"]["test"]) == 64
    config = suite.specs["arc_easy"]
    assert config["test_split"] == "test" and config["training_split"] == "train" and config["validation_split"] is None
    assert config["dataset_path"] == "json" and set(config["dataset_kwargs"]["data_files"]) == {"test", "train"}


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


def test_lm_eval_renders_the_builtin_prompts_on_converted_documents(data_dir, tmp_path):
    names = ["arc_easy", "openbookqa", "winogrande", "piqa", "social_iqa", "rte", "mmlu"]
    suite = build_local_suite(names, str(data_dir), {}, tmp_path / "work", {"mmlu": 1})
    tasks = {n: to_lm_eval(suite.specs[n]) for n in names if n != "mmlu"}

    def first(name):
        task = tasks[name]
        doc = list(task.eval_docs)[0]
        return task.doc_to_text(doc), task.doc_to_choice(doc), task.doc_to_target(doc)

    assert first("arc_easy") == ("Question: Which gas do plants absorb?\nAnswer:", ["oxygen", "carbon", "helium", "neon"], 1)
    assert first("openbookqa") == ("Fog is most likely around", ["a marsh", "a desert", "the moon", "a fire"], 0)
    assert first("piqa") == ("Question: How do I dry a wet phone?\nAnswer:", ["Put it in rice.", "Put it in water."], 0)
    assert first("social_iqa") == ("Q: Tracy didn't go home. She stayed out. What does Tracy need to do before this?\nA:",
                                   ["make a plan", "go home", "find a place"], 2)
    assert first("rte") == ("A cat sat on the mat.\nQuestion: An animal sat. True or False?\nAnswer:", ["True", "False"], 0)
    # winogrande scores the sentence's tail after each filled-in prefix (lm-eval's partial evaluation)
    assert first("winogrande") == (1, ["Sarah was a better surgeon than Maria so Sarah",
                                       "Sarah was a better surgeon than Maria so Maria"], "got the easier cases.")

    mmlu = to_lm_eval(suite.specs["mmlu"])
    assert [g.name for g in mmlu] == ["mmlu_stem", "mmlu_other"] and mmlu.version == str(MMLU_GROUP_VERSION)
    anatomy = next(t for t in mmlu.get_all_tasks() if t.task_name == "mmlu_anatomy")
    doc = list(anatomy.eval_docs)[1]
    assert anatomy.fewshot_context(doc, num_fewshot=1) == (
        "The following are multiple choice questions (with answers) about anatomy.\n\n"
        "Which bone is in the arm?\nA. femur\nB. humerus\nC. tibia\nD. fibula\nAnswer: B\n\n"
        "How many chambers has the heart?\nA. two\nB. three\nC. four\nD. five\nAnswer:")
    assert anatomy.doc_to_target(doc) == 2 and anatomy.doc_to_choice(doc) == ["A", "B", "C", "D"]
    assert suite.data["mmlu"]["rows"] == {"test": 5, "dev": 2} and suite.data["mmlu"]["subjects"] == 2
    assert len(suite.data["mmlu"]["missing_subjects"]) == 55


def test_unusable_or_missing_data_is_skipped_with_the_reason(data_dir, tmp_path):
    suite = build_local_suite(["boolq", "hellaswag", "rte"], str(data_dir), {}, tmp_path / "work", {})
    assert set(suite.skipped) == {"boolq", "hellaswag"} and "rte" in suite.specs
    assert "without their passages" in suite.skipped["boolq"] and "eval.files.boolq" in suite.skipped["boolq"]
    assert "hellaswag_val.jsonl" in suite.skipped["hellaswag"] and "eval.files.hellaswag" in suite.skipped["hellaswag"]
    with pytest.raises(UnusableData, match="passages"):
        build_local_suite(["boolq"], str(data_dir), {}, tmp_path / "work", {}, strict=True)


def test_passage_bearing_boolq_and_hub_schema_hellaswag_are_used(data_dir, tmp_path):
    boolq = tmp_path / "val.jsonl"
    boolq.write_text("\n".join(json.dumps(r) for r in [
        {"question": "is the sky blue", "passage": "The sky is blue.", "label": True, "idx": 0},
        {"question": "do fish fly", "passage": "Fish swim.", "answer": False}]))
    hella = tmp_path / "hellaswag_val.jsonl"
    hella.write_text(json.dumps({"ind": 4, "activity_label": "Cooking", "ctx_a": "A man cracks eggs.", "ctx_b": "he",
                                 "ctx": "A man cracks eggs. he", "endings": ["whisks them [title] fast.", "sleeps.",
                                                                             "flies.", "sings."], "label": "0"}))
    suite = build_local_suite(["boolq", "hellaswag"], str(data_dir), {"boolq": str(boolq), "hellaswag": str(hella)},
                              tmp_path / "work", {})
    assert suite.skipped == {}
    assert [d["label"] for d in docs_of(suite, "boolq", "validation")] == [1, 0]
    task = to_lm_eval(suite.specs["boolq"])
    doc = list(task.eval_docs)[0]
    assert task.doc_to_text(doc) == "The sky is blue.\nQuestion: is the sky blue?\nAnswer:" and task.doc_to_target(doc) == 1
    task = to_lm_eval(suite.specs["hellaswag"])
    doc = list(task.eval_docs)[0]  # lm-eval's own process_docs: label prefix, capitalised ctx_b, [title] -> ". "
    assert task.doc_to_text(doc) == "Cooking: A man cracks eggs. He"
    assert task.doc_to_choice(doc) == ["whisks them. fast.", "sleeps.", "flies.", "sings."] and task.doc_to_target(doc) == 0
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps({"ctx_a": "x"}))
    with pytest.raises(ValueError, match="missing fields"):
        build_local_suite(["hellaswag"], None, {"hellaswag": str(broken)}, tmp_path / "work", {})


def test_bad_requests_fail_early(data_dir, tmp_path):
    with pytest.raises(ValueError, match="no local definition"):
        build_local_suite(["arc_easy", "gsm8k"], str(data_dir), {}, tmp_path, {})
    with pytest.raises(ValueError, match="train split"):  # winogrande has no local train split for examples
        build_local_suite(["winogrande"], str(data_dir), {}, tmp_path, {"winogrande": 2})
    with pytest.raises(ValueError, match="not a directory"):
        build_local_suite(["rte"], str(data_dir / "nope"), {}, tmp_path, {})
    with pytest.raises(ValueError, match="answer-letter"):
        write_csv(tmp_path / "bad/test/anatomy_test.csv", [["q", "a", "b", "c", "d", "Z"]])
        build_local_suite(["mmlu"], None, {"mmlu": str(tmp_path / "bad")}, tmp_path, {})
    bad_arc = tmp_path / "arc.csv"
    write_csv(bad_arc, [["only", "three", "columns"]])
    with pytest.raises(ValueError, match="6 columns"):
        read_arc_csv(bad_arc)
    with pytest.raises(ValueError, match="cannot read"):
        read_source(TASKS["rte"], tmp_path / "rte.parquet")


# ---- the copied prompts are lm-eval 0.4.13's: every field of the installed YAML, functions by bytecode ----
STRUCTURAL = {"task", "tag", "dataset_path", "dataset_name", "include"}


def same(a, b) -> bool:
    if callable(a) or callable(b):
        return callable(a) and callable(b) and a.__name__ == b.__name__ and a.__code__.co_code == b.__code__.co_code
    return a == b


@pytest.mark.parametrize("name", sorted(TASKS))
def test_templates_equal_the_installed_builtin_yaml(name):
    spec = TASKS[name]
    installed = load_yaml(LM_EVAL_TASKS / spec.builtin, resolve_func=True)
    assert installed["task"] == name
    fields = (set(installed) | set(spec.template)) - STRUCTURAL
    differing = [k for k in fields if not same(spec.template.get(k), installed.get(k))]
    assert differing == []
    assert spec.eval_split == ("test" if installed.get("test_split") else "validation")


def test_mmlu_subjects_categories_and_template_equal_the_installed_yaml():
    folder = LM_EVAL_TASKS / "mmlu/default"
    installed = {p.stem.removeprefix("mmlu_"): load_yaml(p, resolve_func=True) for p in folder.glob("mmlu_*.yaml")}
    ours = {s: c for c, subjects in MMLU_CATEGORIES.items() for s in subjects}
    assert len(ours) == 57 and set(ours) == set(installed)
    for subject, cfg in installed.items():
        assert cfg["tag"] == f"mmlu_{ours[subject]}_tasks" and cfg["task_alias"] == subject
        assert cfg["description"] == mmlu_description(subject)
        assert {k: v for k, v in cfg.items() if k not in STRUCTURAL | {"description", "task_alias"}} == MMLU_TEMPLATE
    for category in MMLU_CATEGORIES:
        group = load_yaml(folder / f"_mmlu_{category}.yaml", resolve_func=True)
        assert group["group_alias"] == category.replace("_", " ")
        assert group["aggregate_metric_list"] == [{"metric": "acc", "weight_by_size": True}]
    top = load_yaml(folder / "_mmlu.yaml", resolve_func=True)
    assert top["task"] == [f"mmlu_{c}" for c in MMLU_CATEGORIES] and top["metadata"]["version"] == MMLU_GROUP_VERSION
