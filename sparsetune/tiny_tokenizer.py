"""Tokenizers trained in-process for the tiny random test models (no hub, deterministic, < 1 s)."""
from __future__ import annotations

from collections import Counter

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from .tasks.synthetic_text import corpus_sentences


def _corpus() -> list[str]:
    # the synthetic task's vocabulary plus plain prose so real text degrades to sub-words, not [UNK]
    extra = ["The quick brown fox jumps over the lazy dog.", "A man is playing a guitar on the stage.",
             "It was the best of times, it was the worst of times.", "0 1 2 3 4 5 6 7 8 9 ? ! , ; : ' \" ( ) -"]
    return corpus_sentences() + extra * 5


def wordpiece_vocab(vocab_size: int) -> dict[str, int]:
    """Specials, every character (plain and ##-continuation), then words by frequency (ties by spelling).
    Built by hand because the WordPiece trainer breaks frequency ties differently from process to process."""
    pre, norm = pre_tokenizers.BertPreTokenizer(), normalizers.BertNormalizer(lowercase=True)
    counts = Counter(w for text in _corpus() for w, _ in pre.pre_tokenize_str(norm.normalize_str(text)))
    chars = sorted({c for w in counts for c in w})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *("##" + c for c in chars)]
    words = [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if len(w) > 1]
    vocab += words[: max(vocab_size - len(vocab), 0)]
    return {t: i for i, t in enumerate(vocab)}


def wordpiece_tokenizer(vocab_size: int = 600) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordPiece(wordpiece_vocab(vocab_size), unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    tok.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", model_max_length=512,
    )


def bytelevel_tokenizer(vocab_size: int = 600) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<pad>", "<s>", "</s>"]
    tok.train_from_iterator(
        _corpus(),
        trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()),
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token=None, model_max_length=512,
    )
