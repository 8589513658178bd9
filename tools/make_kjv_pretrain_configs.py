#!/usr/bin/env python3
"""Builds the starting points of recipes/pretrain_kjv_gpt.yaml and recipes/pretrain_kjv_bert.yaml:
a model directory each with an architecture (config.json, no weights: the recipes use
`model.init: random`) and a tokenizer with a vocabulary of 4,096 trained on or drawn from the
King James Bible (Debian's bible-kjv), with tools/make_kjv_tokenizers.py's procedures:

  configs/models/kjv_gpt/   LLaMA-style decoder: 4 layers, hidden 256, 4 heads (2 KV groups),
                            FFN 704, 256 positions; SentencePiece unigram tokenizer.model
                            (<unk> 0, <s> 1, </s> 2, <pad> 3)
  configs/models/kjv_bert/  BERT encoder with an MLM head: 4 layers, hidden 256, 4 heads, FFN 1024,
                            256 positions; uncased WordPiece tokenizer.json ([PAD] 0 ... [MASK] 4)

Run from the repository root:  python3 tools/make_kjv_pretrain_configs.py
"""
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_kjv_tokenizers as kjv  # noqa: E402

VOCAB = 4096


def gpt_config():
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": VOCAB, "hidden_size": 256,
        "intermediate_size": 704, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
        "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "hidden_act": "silu",
        "initializer_range": 0.02, "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": 2,
        "pad_token_id": 3, "attention_bias": False, "mlp_bias": False, "torch_dtype": "float32",
    }


def bert_config():
    return {
        "architectures": ["BertForMaskedLM"], "model_type": "bert", "vocab_size": VOCAB, "hidden_size": 256,
        "intermediate_size": 1024, "num_hidden_layers": 4, "num_attention_heads": 4, "max_position_embeddings": 256,
        "type_vocab_size": 2, "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
        "layer_norm_eps": 1e-12, "initializer_range": 0.02, "pad_token_id": 0, "torch_dtype": "float32",
    }


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def main():
    root = os.path.join("configs", "models")
    texts = kjv.verses()
    kjv.VOCAB = VOCAB  # the tokenizer tool's procedures, at this vocabulary size
    with tempfile.TemporaryDirectory() as tmp:
        kjv.sentencepiece(texts, tmp)
        kjv.wordpiece(texts, tmp)
        gpt, bert = os.path.join(root, "kjv_gpt"), os.path.join(root, "kjv_bert")
        os.makedirs(gpt, exist_ok=True)
        os.makedirs(bert, exist_ok=True)
        shutil.copy(os.path.join(tmp, "kjv_unigram128.model"), os.path.join(gpt, "tokenizer.model"))
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(os.path.join(tmp, "kjv_wordpiece128", name), os.path.join(bert, name))
    write_json(os.path.join(gpt, "config.json"), gpt_config())
    write_json(os.path.join(bert, "config.json"), bert_config())


if __name__ == "__main__":
    main()
