#!/usr/bin/env python3
"""Writes the tokenizer fixtures under tests/fixtures/tokenizers/ from HF `tokenizers` and
`sentencepiece` themselves, so that secateur's tokenizers are checked against the real thing.

Nothing is downloaded: every tokenizer is trained here, on CORPUS below, in the style of a real
model family, then saved with the ids the library produces for TEXTS and PAIRS:

  <name>/tokenizer.json   HF's own serialisation (what secateur must read)
  <name>/expected.json    for each text: ids with and without special tokens, the tokens, decode
                          results; pair encodings (ids, type ids); decodes of chosen id lists
  spm_<type>.model        sentencepiece models, with spm_<type>.expected.json

Usage: python3 tools/make_tokenizer_fixtures.py --out tests/fixtures/tokenizers [--only NAME,...]
Each fixture is made on its own: one failure is reported and the others are still written;
the exit status is 1 if any failed.
"""
import argparse
import json
import os
import sys
import tempfile
import traceback

CORPUS = """\
Pruning removes weights, heads and whole layers from a trained transformer.
The pruned model is smaller and faster, and after a short recovery phase it is nearly as accurate.
Structured pruning keeps the shapes dense: a removed attention head takes its rows with it.
We prune the model, we measure the loss, and we prune again until the budget is met.
Secateurs are the gardener's pruning shears; the gardener prunes the roses every spring.
A good gardener doesn't cut too much: he'll cut the dead wood and they're done by noon.
It's not hard, you've seen it, I'm sure, and we'd do it again. They'll say it's fine.
The quick brown fox jumps over the lazy dog while the dog sleeps in the sun.
Numbers matter: 12 layers, 768 hidden units, 3072 intermediate units, 30522 tokens.
The learning rate was 0.0001 for 1000 steps, then 3.14 percent of the heads were pruned.
In 2023 and 2024 the models grew from 7 billion to 70 billion parameters.
Tokenizers split text into words and words into pieces; rare words become several pieces.
Byte-level tokenizers never meet an unknown character, since every byte has a token.
WordPiece marks the continuation of a word with two hashes, as in play ##ing.
SentencePiece treats the text as a raw stream and marks spaces with a special underscore.
Hello, world! Hello again, world. Goodbye, world?
The café served crème brûlée, a naïve résumé of French desserts, near the façade.
Die Größe der Straße ist groß, und die Bäume sind grün. Über alles!
El niño comió mañana una piña en la montaña, señor.
Ελληνικά: η γλώσσα είναι όμορφη και παλιά. Καλημέρα κόσμε.
Русский текст: мы обрезаем модель и проверяем точность.
日本語のテキストです。中文字符也在这里。我们修剪模型。
한국어 텍스트입니다. 모델을 가지치기합니다.
def prune(model, ratio=0.5): return [h for h in model.heads if h.score > ratio]
for (int i = 0; i < n; ++i) { x[i] = y[i] * 2; }
https://example.com/path?query=1&other=2 is a URL, and user@example.com is an address.
The recipe says: learn the masks, prune the heads, fine-tune, and evaluate the result.
Evaluation uses perplexity for language models and accuracy for classifiers.
The token cache keys each file by the tokenizer's fingerprint and the text's hash.
    Indented lines keep their spaces, and tabs\tare\tkept too.
Questions? Answers! Quotes "like this" and 'like that' and ``like this''.
Prices: $5, 10%, 3/4, 1,000,000 and 2.5e-3; dates like 2024-01-31.
The model, the data, the recipe: everything that decides the result is recorded.
A pruned BERT keeps its embeddings; a pruned LLaMA keeps its vocabulary.
Heads, neurons, layers and channels are the structures we can remove.
The mask is learned with a penalty, and the penalty pushes most gates to zero.
Recovery training distills the dense teacher into the pruned student.
"""

# The texts every tokenizer encodes: accents, CJK, Hangul, Greek, Cyrillic, emoji, whitespace
# runs, tabs and newlines, digits, contractions in both cases, special-token spellings, control
# and unassigned code points, an over-long word, the empty string.
TEXTS = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "Pruning removes 12345 weights; π ≈ 3.14 and 1,000,000 too.",
    "don't stop: HE'LL say we're fine, it's 'quoted', you've I'm they'd O'Neil",
    "Café naïve résumé façade Ångström crème brûlée",
    "Größe Straße ÉCOLE İstanbul ǅemal ﬁne ① ½ ㎏",
    "日本語のテキストと中文字符，还有标点。",
    "한국어 텍스트입니다",
    "Ελληνικά: αβγ ΣΑΣ όλα",
    "Русский текст, ёлка",
    "emoji 😀🚀 and ❤️ done",
    "   leading and trailing spaces   ",
    "tabs\tand\nnewlines\r\n\nmixed  \t whitespace\u00a0nbsp\u3000ideographic",
    "",
    "a",
    " ",
    "https://example.com/path?q=1&r=2#frag <b>html</b> $x+y=z^2 ~tilde | pipe",
    "snake_case camelCase kebab-case ALLCAPS mIxEd",
    "Special [CLS] tokens [MASK] inside <s> text </s> and <|endoftext|> <|begin_of_text|> <mask> <|im_start|>",
    "control \u0007 bell, zero\u200bwidth, unassigned \u0378, replacement \ufffd, nul \u0000 end",
    "Secateur and secateurs cut SECATEUR pruning; pruning pruned",
    "x" * 120,
    "Numbers: 1 22 333 4444 55555 666666 3.14159 -42 +7 1e-5 ２０２４",
    "combining: e\u0301 n\u0303 a\u030a vs é ñ å",
    "``quoted'' text -- dashes — em",
    "repeated!!!??? ... ,,, ;;",
    "line one\nline two\n\n\nline five",
]

PAIRS = [
    ("Hello, world!", "The quick brown fox."),
    ("don't", ""),
    ("", "x"),
    ("Café 12345", "日本語 text"),
    ("Special [SEP] inside", "second <s> part </s>"),
]

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")
BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def lines():
    return CORPUS.splitlines()


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1, sort_keys=True)
        f.write("\n")


def try_call(fn):
    """The result of fn(), or None when HF raises (recorded as null: "HF refused this")."""
    try:
        return fn()
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException:  # noqa: BLE001 - any refusal is data here; a Rust panic is a BaseException
        return None


def save_hf(tok, out, name, config=None):
    """Saves `tok` and the ids HF produces, computed from the file as reloaded from disk."""
    import tokenizers
    from tokenizers import Tokenizer
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "tokenizer.json")
    tok.save(path, pretty=True)
    tok = Tokenizer.from_file(path)
    if config is not None:
        write_json(os.path.join(d, "tokenizer_config.json"), config)
    cases = []
    for text in TEXTS:
        with_special = tok.encode(text, add_special_tokens=True)
        plain = tok.encode(text, add_special_tokens=False)
        cases.append({
            "text": text,
            "ids": with_special.ids,
            "ids_no_special": plain.ids,
            "tokens_no_special": plain.tokens,
            "decode": tok.decode(with_special.ids, skip_special_tokens=True),
            "decode_keep_special": tok.decode(with_special.ids, skip_special_tokens=False),
            # Cutting the last token can split a multi-byte character: checks the lossy paths.
            "decode_prefix": tok.decode(plain.ids[:-1], skip_special_tokens=True),
            # Intermediate stages, to locate a mismatch (not compared by the tests).
            "normalized": try_call(lambda: tok.normalizer.normalize_str(text)) if tok.normalizer is not None else text,
            "pre_tokenized": try_call(lambda: [p for p, _ in tok.pre_tokenizer.pre_tokenize_str(
                tok.normalizer.normalize_str(text) if tok.normalizer is not None else text)]) if tok.pre_tokenizer is not None else None,
        })
    pairs = []
    for a, b in PAIRS:
        enc = tok.encode(a, b, add_special_tokens=True)
        pairs.append({"a": a, "b": b, "ids": enc.ids, "type_ids": enc.type_ids})
    size = tok.get_vocab_size(with_added_tokens=True)
    id_lists = [list(range(0, min(size, 64))), list(range(max(0, size - 40), size)), [5, 10**6, 6]]
    decodes = []
    for ids in id_lists:
        for skip in (True, False):
            decodes.append({"ids": ids, "skip_special_tokens": skip,
                            "text": try_call(lambda: tok.decode(ids, skip_special_tokens=skip))})
    write_json(os.path.join(d, "expected.json"), {
        "tokenizers_version": tokenizers.__version__,
        "vocab_size": size,
        "cases": cases,
        "pairs": pairs,
        "decodes": decodes,
    })
    print(f"{name}: vocab {size}, {sum(len(c['ids']) for c in cases)} ids")


def rebuild(tok, edit):
    """`tok` with its JSON edited by edit(dict): for settings the trainers do not carry over."""
    from tokenizers import Tokenizer
    j = json.loads(tok.to_str())
    edit(j)
    return Tokenizer.from_str(json.dumps(j))


def byte_level_bpe(pre_tokenizer, vocab_size, specials=()):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizer
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  special_tokens=list(specials),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(lines(), trainer=trainer)
    return tok


def make_bert(out):
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                                lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=600, min_frequency=1, show_progress=False,
                                        special_tokens=BERT_SPECIALS)
    tok.train_from_iterator(lines(), trainer=trainer)
    tok.post_processor = processors.BertProcessing(("[SEP]", tok.token_to_id("[SEP]")),
                                                   ("[CLS]", tok.token_to_id("[CLS]")))
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    # A normalized, single-word added token: matched in lowercased text, never inside a word.
    tok.add_tokens([AddedToken("Secateur", single_word=True, normalized=True)])
    save_hf(tok, out, "bert_wordpiece")


def make_wordpiece_misc(out):
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=20))
    tok.normalizer = normalizers.Sequence([
        normalizers.NFKC(), normalizers.NFD(), normalizers.StripAccents(), normalizers.Lowercase(),
        normalizers.Replace("``", '"'), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Strip()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Whitespace(), pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.Punctuation(behavior="isolated")])
    trainer = trainers.WordPieceTrainer(vocab_size=500, min_frequency=1, show_progress=False,
                                        special_tokens=BERT_SPECIALS)
    tok.train_from_iterator(lines(), trainer=trainer)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    save_hf(tok, out, "wordpiece_misc")


def make_wordlevel(out):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKD(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                 pre_tokenizers.CharDelimiterSplit("-")])
    trainer = trainers.WordLevelTrainer(vocab_size=300, min_frequency=1, show_progress=False,
                                        special_tokens=["<unk>", "<pad>"])
    tok.train_from_iterator(lines(), trainer=trainer)
    save_hf(tok, out, "wordlevel_whitespace")  # no post-processor, no decoder


def make_gpt2(out):
    from tokenizers import decoders, pre_tokenizers, processors
    tok = byte_level_bpe(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True), 700, ["<|endoftext|>"])
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    tok.decoder = decoders.ByteLevel()
    save_hf(tok, out, "gpt2_bytelevel")


def make_roberta(out):
    from tokenizers import AddedToken, decoders, pre_tokenizers, processors
    tok = byte_level_bpe(pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True), 700,
                         ["<s>", "<pad>", "</s>", "<unk>"])
    # <mask> swallows the space before it (lstrip), as RoBERTa's does; it is not in the BPE vocab.
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, rstrip=False, single_word=False, normalized=False,
                                       special=True)])
    # sep and cls are positional in tokenizers 0.23 (keywords are refused).
    tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")),
                                                      trim_offsets=True, add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    save_hf(tok, out, "roberta_bytelevel")


def split_then_bytes(pattern):
    from tokenizers import Regex, pre_tokenizers
    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])


def make_llama3(out):
    from tokenizers import decoders, processors
    tok = byte_level_bpe(split_then_bytes(LLAMA3_PATTERN), 700)

    def edit(j):
        # ignore_merges as LLaMA-3 sets it, with whole words in the vocab that the merges alone
        # would not produce, so the flag changes ids.
        j["model"]["ignore_merges"] = True
        vocab = j["model"]["vocab"]
        for word in ["\u0120secateur", "\u0120pruning", "pruned"]:
            if word not in vocab:
                vocab[word] = len(vocab)
    tok = rebuild(tok, edit)
    tok.add_special_tokens(["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"])
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|>:1 $B:1",
                                      special_tokens=[("<|begin_of_text|>", bos)])])
    tok.decoder = decoders.ByteLevel()
    save_hf(tok, out, "llama3_bpe")


def make_qwen2(out):
    from tokenizers import decoders, normalizers, processors
    tok = byte_level_bpe(split_then_bytes(QWEN2_PATTERN), 700)
    tok.normalizer = normalizers.NFC()
    tok.add_special_tokens(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.decoder = decoders.ByteLevel()
    # Qwen2's special tokens come from its tokenizer_config.json (no bos; eos and pad named).
    save_hf(tok, out, "qwen2_bpe", config={"bos_token": None, "eos_token": "<|im_end|>",
                                             "pad_token": {"content": "<|endoftext|>", "special": True},
                                             "unk_token": None})


def llama2_base():
    """A LLaMA-2 style BPE: Metaspace pieces, byte fallback for characters outside the vocab."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=True)
    trainer = trainers.BpeTrainer(vocab_size=600, min_frequency=2, show_progress=False,
                                  special_tokens=["<unk>", "<s>", "</s>"])
    tok.train_from_iterator(lines(), trainer=trainer)

    def edit(j):
        vocab = j["model"]["vocab"]
        for b in range(256):
            vocab.setdefault(f"<0x{b:02X}>", len(vocab))
        j["model"]["byte_fallback"] = True
        j["model"]["fuse_unk"] = True
        j["model"]["unk_token"] = "<unk>"
    return rebuild(tok, edit)


def llama2_finish(tok):
    from tokenizers import decoders, processors
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s>:1 $B:1",
                                                       special_tokens=[("<s>", bos)])
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(content=" ", left=1, right=0)])
    return tok


def make_llama2(out):
    from tokenizers import pre_tokenizers
    tok = llama2_base()
    # As transformers' converter writes it today: no normalizer, one Metaspace piece per text.
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=False)
    save_hf(llama2_finish(tok), out, "llama2_metaspace")


def make_llama2_legacy(out):
    from tokenizers import normalizers
    tok = llama2_base()
    # The older form: the prefix and the space replacement as normalizers, no pre-tokenizer.
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    tok = rebuild(tok, lambda j: j.update(pre_tokenizer=None))
    save_hf(llama2_finish(tok), out, "llama2_legacy")


def make_metaspace_t5(out):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    # T5-like: NFKC, Metaspace pieces and decoder, "$A </s>", and an unk (no byte fallback).
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    trainer = trainers.BpeTrainer(vocab_size=500, min_frequency=2, show_progress=False,
                                  special_tokens=["<pad>", "</s>", "<unk>"], limit_alphabet=80)
    tok.train_from_iterator(lines(), trainer=trainer)
    eos = tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B:1 </s>:1",
                                                       special_tokens=[("</s>", eos)])
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    save_hf(tok, out, "metaspace_t5")


def train_spm(out, name, **kwargs):
    import sentencepiece as spm
    with tempfile.TemporaryDirectory() as tmp:
        corpus = os.path.join(tmp, "corpus.txt")
        with open(corpus, "w", encoding="utf-8") as f:
            f.write(CORPUS)
        spm.SentencePieceTrainer.train(input=corpus, model_prefix=os.path.join(tmp, name), minloglevel=1, **kwargs)
        with open(os.path.join(tmp, name + ".model"), "rb") as f:
            model = f.read()
    path = os.path.join(out, name + ".model")
    with open(path, "wb") as f:
        f.write(model)
    sp = spm.SentencePieceProcessor(model_file=path)
    cases = []
    for text in TEXTS:
        ids = sp.encode(text)
        cases.append({"text": text, "ids": ids, "pieces": sp.encode(text, out_type=str), "decode": sp.decode(ids),
                      "decode_prefix": sp.decode(ids[:-1])})
    write_json(os.path.join(out, name + ".expected.json"), {
        "sentencepiece_version": spm.__version__,
        "vocab_size": sp.get_piece_size(),
        "bos_id": sp.bos_id(), "eos_id": sp.eos_id(), "unk_id": sp.unk_id(), "pad_id": sp.pad_id(),
        "cases": cases,
    })
    print(f"{name}: vocab {sp.get_piece_size()}")
    return path


def make_spm(out):
    train_spm(out, "spm_unigram", model_type="unigram", vocab_size=500, character_coverage=1.0,
              hard_vocab_limit=False)
    # LLaMA's settings: identity normalisation (which also keeps the file small), byte fallback,
    # split digits, whitespace runs kept.
    train_spm(out, "spm_bpe", model_type="bpe", vocab_size=600, character_coverage=0.9995, byte_fallback=True,
              split_digits=True, normalization_rule_name="identity", remove_extra_whitespaces=False,
              allow_whitespace_only_pieces=True)


FIXTURES = {
    "bert": make_bert, "wordpiece_misc": make_wordpiece_misc, "wordlevel": make_wordlevel, "gpt2": make_gpt2,
    "roberta": make_roberta, "llama3": make_llama3, "qwen2": make_qwen2, "llama2": make_llama2,
    "llama2_legacy": make_llama2_legacy, "metaspace_t5": make_metaspace_t5, "spm": make_spm,
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", default="", help="comma-separated fixture names (default: all)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    names = [n for n in args.only.split(",") if n] or list(FIXTURES)
    failed = []
    for name in names:
        try:
            FIXTURES[name](args.out)
        except Exception:  # noqa: BLE001 - report and go on with the other fixtures
            failed.append(name)
            print(f"FAILED {name}:\n{traceback.format_exc()}", file=sys.stderr)
    versions = {}
    for module in ("tokenizers", "sentencepiece", "transformers"):
        versions[module] = try_call(lambda: __import__(module).__version__)
    versions["python"] = sys.version.split()[0]
    write_json(os.path.join(args.out, "versions.json"), versions)
    print("versions:", versions, "failed:", failed or "none")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
