"""OASST2 message trees -> conversation threads -> (prompt, response) text.

Threads: one per tree, the best-ranked path (as OpenAssistant's own "top-1" exports and QLoRA's Guanaco
data do): from each root prompt, follow the reply with the lowest rank at every turn (rank 0 = best;
unranked replies come after ranked ones, in file order), and end the thread at its last assistant
message. Deleted messages and those that failed review (deleted=true, review_result=false) are not
followed. A tree whose root prompt has no usable assistant reply gives no thread.

Rendering: the prompt is every turn before the last assistant message, the response that message:
  - chat_template: the tokenizer's chat template (prompt = the turns + the generation prompt; response =
    what the template adds for the last message, its end-of-turn marker included);
  - guanaco: "### Human: {text}### Assistant: {text}..." (QLoRA's Guanaco layout of OpenAssistant, which
    SPEFT's MMLU script derives from), the prompt ending in "### Assistant:".
"""
from __future__ import annotations

from ..errors import ConfigError

CHAT_ROLES = {"prompter": "user", "assistant": "assistant"}
GUANACO = {"prompter": "### Human:", "assistant": "### Assistant:"}


def best_threads(ids: list, parents: list, roles: list, ranks: list, usable: list[bool], langs: list,
                 languages: set[str] | None) -> tuple[list[list[int]], dict[str, int]]:
    """(threads as row indices, counts). Lists are the message columns, row by row; `languages`: keep only
    trees whose root prompt is in one of them (None: all)."""
    children: dict = {}
    for i, parent in enumerate(parents):
        if parent is not None and usable[i]:
            children.setdefault(parent, []).append(i)
    roots = [i for i, parent in enumerate(parents) if parent is None and usable[i] and roles[i] == "prompter"]
    order = lambda i: (ranks[i] is None, ranks[i] if ranks[i] is not None else 0, i)
    threads, counts = [], {"trees": len(roots), "threads": 0, "without_reply": 0, "other_language": 0}
    for root in roots:
        if languages is not None and langs[root] not in languages:
            counts["other_language"] += 1
            continue
        path = [root]
        while ids[path[-1]] in children:
            path.append(min(children[ids[path[-1]]], key=order))
        last = max((n for n, i in enumerate(path) if roles[i] == "assistant"), default=None)
        if last is None:
            counts["without_reply"] += 1
            continue
        threads.append(path[: last + 1])
    counts["threads"] = len(threads)
    return threads, counts


def guanaco_pair(roles: list[str], texts: list[str]) -> tuple[str, str]:
    """QLoRA's Guanaco text, split before the last reply (the space after the colon starts the response,
    so the seam tokenizes as in the joined text)."""
    turns = "".join(f"{GUANACO[r]} {t}" for r, t in zip(roles[:-1], texts[:-1]))
    return turns + GUANACO["assistant"], " " + texts[-1]


def chat_pair(tokenizer, roles: list[str], texts: list[str]) -> tuple[str, str]:
    """The conversation through the tokenizer's chat template, split before the last reply."""
    messages = [{"role": CHAT_ROLES[r], "content": t} for r, t in zip(roles, texts)]
    prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    if not full.startswith(prompt):
        raise ConfigError("the tokenizer's chat template renders a conversation differently from its prompt + the last reply "
                          "(e.g. it rewrites earlier turns); use task.options.prompt_format=guanaco")
    return prompt, full[len(prompt):].rstrip()


def prompt_format(tokenizer, choice: str) -> str:
    """auto = the chat template when the tokenizer has one, else guanaco."""
    allowed = ("auto", "chat_template", "guanaco")
    if choice not in allowed:
        raise ConfigError(f"task.options.prompt_format={choice!r}; allowed: {', '.join(allowed)}")
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if choice == "chat_template" and not has_template:
        raise ConfigError("task.options.prompt_format=chat_template but the tokenizer has no chat template; use guanaco or auto")
    return ("chat_template" if has_template else "guanaco") if choice == "auto" else choice
