#!/usr/bin/env python3
"""Builds the two small tokenizers that fit the 128-entry vocabularies of tests/fixtures/models,
trained on or drawn from the King James Bible text of Debian's bible-kjv packages:

  kjv_unigram128.model         SentencePiece unigram, 128 pieces (<unk> 0, <s> 1, </s> 2, <pad> 3),
                               trained by Debian's `spm_train` on the verse texts; LLaMA-style ids
                               for llama_gqa (bos 1, eos 2) and the quickstart
  kjv_wordpiece128/tokenizer.json
                               BERT-style uncased WordPiece: [PAD] 0, [UNK] 1, [CLS] 2, [SEP] 3,
                               [MASK] 4, every character of the lower-cased text, "##" + every
                               letter, then the most frequent whole words up to 128 entries; for
                               bert_mlm / bert_cls (pad_token_id 0)

Only the standard library, `bible` and `spm_train` are used (scripts/install-deps.sh installs
them). Run from the repository root:  python3 tools/make_kjv_tokenizers.py --out tests/fixtures/data
"""
import argparse
import collections
import json
import os
import re
import subprocess
import tempfile

VOCAB = 128
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def verses():
    out = subprocess.run(["bible", "-f", "-m", "8192", "gen1:1-rev22:21"], check=True, capture_output=True, text=True).stdout
    texts = []
    for line in out.splitlines():
        ref, _, text = line.partition(" ")
        if not re.match(r"^[0-9]?[A-Za-z]+[0-9]+:[0-9]+$", ref):
            raise SystemExit(f"unexpected line from bible: {line[:60]!r}")
        texts.append(" ".join(text.split()))  # the same clean-up as lib/data/kjv.cpp
    if len(texts) != 31102:
        raise SystemExit(f"expected 31102 verses, got {len(texts)}")
    return texts


def sentencepiece(texts, out_dir):
    with tempfile.TemporaryDirectory() as tmp:
        corpus = os.path.join(tmp, "kjv.txt")
        with open(corpus, "w") as f:
            f.write("\n".join(texts) + "\n")
        subprocess.run(["spm_train", f"--input={corpus}", f"--model_prefix={os.path.join(out_dir, 'kjv_unigram128')}",
                        f"--vocab_size={VOCAB}", "--model_type=unigram", "--character_coverage=1.0",
                        "--unk_id=0", "--bos_id=1", "--eos_id=2", "--pad_id=3", "--num_threads=1",
                        "--input_sentence_size=0", "--shuffle_input_sentence=false", "--minloglevel=2",
                        "--normalization_rule_name=identity"],
                       check=True)
    os.remove(os.path.join(out_dir, "kjv_unigram128.vocab"))


def wordpiece(texts, out_dir):
    lowered = [t.lower() for t in texts]
    chars = sorted({c for t in lowered for c in t if not c.isspace()})
    letters = [c for c in chars if c.isalpha()]
    vocab = SPECIALS + chars + ["##" + c for c in letters]
    # BertPreTokenizer splits on whitespace and punctuation, so words are runs of letters.
    counts = collections.Counter(w for t in lowered for w in re.findall(r"[a-z]+", t) if len(w) > 1)
    for word, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if len(vocab) == VOCAB:
            break
        vocab.append(word)
    if len(vocab) != VOCAB:
        raise SystemExit(f"vocabulary has {len(vocab)} entries, expected {VOCAB}")
    added = [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
              "special": True} for i, s in enumerate(SPECIALS)]
    tokenizer = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                       "strip_accents": None, "lowercase": True},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": {t: i for i, t in enumerate(vocab)}},
    }
    d = os.path.join(out_dir, "kjv_wordpiece128")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "tokenizer.json"), "w") as f:
        json.dump(tokenizer, f, indent=1, ensure_ascii=False)
        f.write("\n")
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "BertTokenizerFast", "do_lower_case": True, "pad_token": "[PAD]",
                   "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]", "mask_token": "[MASK]"}, f, indent=1)
        f.write("\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    texts = verses()
    sentencepiece(texts, args.out)
    wordpiece(texts, args.out)


if __name__ == "__main__":
    main()
