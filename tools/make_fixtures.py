#!/usr/bin/env python3
"""Writes the reference fixtures under tests/fixtures/models/<name>/ from Hugging Face transformers.

Each fixture is a tiny random-init model (fp32, seeded) with:
  config.json, model.safetensors   save_pretrained's own output (the format secateur must read)
  model.pt                         torch.jit.trace of the eager-attention model on (input_ids,
                                   attention_mask), for the TorchScript loading path
  reference.safetensors            input_ids, attention_mask, logits, last_hidden_state (fp32)

Usage: python3 tools/make_fixtures.py --out tests/fixtures/models
CPU only on purpose: CPU kernels give references that do not depend on the GPU model.
"""
import argparse
import inspect
import json
import os
import shutil
import sys
import traceback
import zipfile

import torch
import transformers
from safetensors.torch import load_file, save_file

T = 12          # sequence length of the reference batch
PAD_TAIL = 4    # row 1 of the batch is right-padded over its last PAD_TAIL positions
VOCAB = 128
# 0.02 (HF's default) makes q.k nearly zero, so attention is almost uniform and a wrong RoPE or
# mask barely moves the logits; 0.1 keeps attention peaked enough for tests to notice.
INIT_RANGE = 0.1


def bert_config(**extra):
    return transformers.BertConfig(
        vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=128, max_position_embeddings=32, type_vocab_size=2, pad_token_id=0,
        initializer_range=INIT_RANGE, **extra)


def roberta_config():
    # RoBERTa's positions start at padding_idx + 1, so it needs T + 2 position slots.
    return transformers.RobertaConfig(
        vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=128, max_position_embeddings=T + 20, type_vocab_size=1,
        pad_token_id=1, bos_token_id=0, eos_token_id=2, num_labels=3,
        initializer_range=INIT_RANGE)


def gpt2_config():
    return transformers.GPT2Config(
        vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4, n_inner=128, n_positions=32,
        bos_token_id=0, eos_token_id=0, tie_word_embeddings=True, initializer_range=INIT_RANGE)


def rope_kwargs(cls, theta, scaling=None):
    """transformers 5 folds rope_theta and rope_scaling into rope_parameters; 4.x takes both."""
    params = inspect.signature(cls.__init__).parameters
    if "rope_parameters" in params:
        rp = {"rope_type": "default", "rope_theta": theta}
        if scaling:
            rp.update(scaling)
        return {"rope_parameters": rp}
    out = {"rope_theta": theta}
    if scaling:
        out["rope_scaling"] = scaling
    return out


def llama_gqa_config():
    cls = transformers.LlamaConfig
    return cls(vocab_size=VOCAB, hidden_size=96, num_hidden_layers=2, num_attention_heads=6,
               num_key_value_heads=2, intermediate_size=200, max_position_embeddings=64,
               tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
               initializer_range=INIT_RANGE, **rope_kwargs(cls, 10000.0))


def llama3_rope_config():
    cls = transformers.LlamaConfig
    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 32}
    return cls(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, intermediate_size=128, max_position_embeddings=256,
               tie_word_embeddings=True, bos_token_id=1, eos_token_id=2,
               initializer_range=INIT_RANGE, **rope_kwargs(cls, 500000.0, scaling))


def qwen2_config():
    cls = transformers.Qwen2Config
    return cls(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, intermediate_size=176, max_position_embeddings=64,
               tie_word_embeddings=False, use_sliding_window=False, bos_token_id=1,
               eos_token_id=2, initializer_range=INIT_RANGE, **rope_kwargs(cls, 10000.0))


def mistral_config():
    cls = transformers.MistralConfig
    return cls(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=1, intermediate_size=128, max_position_embeddings=64,
               sliding_window=None, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
               initializer_range=INIT_RANGE, **rope_kwargs(cls, 10000.0))


# name -> (model class, config factory, seed, pad id used in the padded tail)
FAMILIES = {
    "bert_mlm": ("BertForMaskedLM", bert_config, 1, 0),
    "bert_cls": ("BertForSequenceClassification", lambda: bert_config(num_labels=3), 2, 0),
    "roberta_cls": ("RobertaForSequenceClassification", roberta_config, 3, 1),
    "gpt2": ("GPT2LMHeadModel", gpt2_config, 4, 0),
    "llama_gqa": ("LlamaForCausalLM", llama_gqa_config, 5, 0),
    "llama3_rope": ("LlamaForCausalLM", llama3_rope_config, 6, 0),
    "qwen2": ("Qwen2ForCausalLM", qwen2_config, 7, 0),
    "mistral": ("MistralForCausalLM", mistral_config, 8, 0),
}


def build(name):
    cls_name, make_config, seed, _ = FAMILIES[name]
    config = make_config()
    config._attn_implementation = "eager"  # sdpa is not an op LibTorch 1.13 knows
    config.use_cache = False               # a traced model cannot return a Cache object
    config.torchscript = True              # HF's own switch for trace-friendly outputs
    torch.manual_seed(seed)
    model = getattr(transformers, cls_name)(config)
    # HF initialises norm weights to 1 and biases to 0; a constant tensor cannot reveal a
    # transposed or misrouted weight in a consumer, so perturb every constant tensor.
    gen = torch.Generator().manual_seed(1000 + seed)
    with torch.no_grad():
        for _, p in model.named_parameters():
            flat = p.detach().reshape(-1)
            if flat.numel() > 1 and bool((flat == flat[0]).all()):
                p.add_(0.1 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    model.eval()
    return model


def make_inputs(name):
    _, _, seed, pad_id = FAMILIES[name]
    gen = torch.Generator().manual_seed(seed)
    # ids from 3 up keep clear of the special tokens (pad 0/1, bos, eos).
    ids = torch.randint(3, VOCAB, (2, T), generator=gen, dtype=torch.int64)
    mask = torch.ones(2, T, dtype=torch.int64)
    mask[1, T - PAD_TAIL:] = 0
    ids[1, T - PAD_TAIL:] = pad_id
    return ids, mask


@torch.no_grad()
def reference(model, ids, mask):
    out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True, return_dict=True)
    # The backbone's own last_hidden_state is unambiguous (after the final norm for decoders);
    # hidden_states[-1] is checked against it so a disagreement is seen, not silently stored.
    base = model.base_model(input_ids=ids, attention_mask=mask, return_dict=True)
    last = base.last_hidden_state
    hs_diff = (out.hidden_states[-1].float() - last.float()).abs().max().item()
    return out.logits.float().contiguous(), last.float().contiguous(), hs_diff


def save_reference(path, ids, mask, logits, last):
    save_file({"input_ids": ids.contiguous(), "attention_mask": mask.contiguous(),
               "logits": logits, "last_hidden_state": last}, path,
              metadata={"transformers": transformers.__version__, "torch": torch.__version__})


def pt_file_version(path):
    with zipfile.ZipFile(path) as z:
        for n in z.namelist():
            if n.endswith("/.data/version") or (n.count("/") == 1 and n.endswith("/version")):
                return z.read(n).decode().strip()
    return "?"


@torch.no_grad()
def trace(model, ids, mask, path, logits):
    traced = torch.jit.trace(model, example_kwarg_inputs={"input_ids": ids, "attention_mask": mask},
                             strict=False, check_trace=False)
    torch.jit.save(traced, path)
    loaded = torch.jit.load(path)
    out = loaded(ids, mask)
    first = out[0] if isinstance(out, (tuple, list)) else out["logits"]
    ops = sorted({n.kind() for n in loaded.inlined_graph.nodes() if n.kind().startswith("aten::")})
    return {"trace_vs_eager_max_abs": (first.float() - logits).abs().max().item(),
            "file_version": pt_file_version(path), "aten_ops": ops}


def write_family(out_dir, name, summary):
    d = os.path.join(out_dir, name)
    os.makedirs(d, exist_ok=True)
    model = build(name)
    ids, mask = make_inputs(name)
    logits, last, hs_diff = reference(model, ids, mask)
    model.save_pretrained(d)
    save_reference(os.path.join(d, "reference.safetensors"), ids, mask, logits, last)
    info = {"class": type(model).__name__, "hidden_states_vs_last_max_abs": hs_diff,
            "logits_shape": list(logits.shape), "files": None}
    if hasattr(model, "model") and hasattr(model.model, "rotary_emb"):
        info["rope_type"] = getattr(model.model.rotary_emb, "rope_type", "?")
    try:
        info.update(trace(model, ids, mask, os.path.join(d, "model.pt"), logits))
    except Exception as e:  # recorded in the summary; the README says which family lacks a .pt
        info["trace_error"] = f"{type(e).__name__}: {e}"
        traceback.print_exc()
        if os.path.exists(os.path.join(d, "model.pt")):
            os.remove(os.path.join(d, "model.pt"))
    summary[name] = info
    return model, ids, mask


def write_bf16(out_dir, summary):
    # Same seed and weights as llama_gqa, stored and run in bfloat16. No model.pt: it would
    # repeat llama_gqa's trace at half the bytes and the fixtures must stay small.
    d = os.path.join(out_dir, "llama_bf16")
    os.makedirs(d, exist_ok=True)
    model = build("llama_gqa").to(torch.bfloat16)
    ids, mask = make_inputs("llama_gqa")
    logits, last, hs_diff = reference(model, ids, mask)
    model.save_pretrained(d)
    save_reference(os.path.join(d, "reference.safetensors"), ids, mask, logits, last)
    summary["llama_bf16"] = {"class": type(model).__name__, "hidden_states_vs_last_max_abs": hs_diff,
                             "weights_dtype": str(next(model.parameters()).dtype)}


def write_sharded(out_dir, summary):
    # llama_gqa's fp32 weights split into shards; the reference is llama_gqa's.
    d = os.path.join(out_dir, "llama_sharded")
    os.makedirs(d, exist_ok=True)
    model = build("llama_gqa")
    ids, mask = make_inputs("llama_gqa")
    logits, last, _ = reference(model, ids, mask)
    model.save_pretrained(d, max_shard_size="300KB")
    save_reference(os.path.join(d, "reference.safetensors"), ids, mask, logits, last)
    summary["llama_sharded"] = {"files": sorted(os.listdir(d))}


def check_roundtrip(out_dir, summary):
    """Every saved model.safetensors must reload into the same class bit-identically."""
    for name, info in summary.items():
        d = os.path.join(out_dir, name)
        if os.path.exists(os.path.join(d, "model.safetensors")):
            info["safetensors_keys"] = len(load_file(os.path.join(d, "model.safetensors")))
        info["files"] = sorted(os.listdir(d))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", nargs="*", help="family names (default: all)")
    args = ap.parse_args()
    torch.set_default_dtype(torch.float32)
    torch.set_num_threads(4)
    os.makedirs(args.out, exist_ok=True)
    summary = {}
    names = args.only or list(FAMILIES) + ["llama_bf16", "llama_sharded"]
    for name in names:
        print(f"== {name}", flush=True)
        try:
            if name == "llama_bf16":
                write_bf16(args.out, summary)
            elif name == "llama_sharded":
                write_sharded(args.out, summary)
            else:
                write_family(args.out, name, summary)
        except Exception as e:
            traceback.print_exc()
            summary[name] = {"error": f"{type(e).__name__}: {e}"}
            shutil.rmtree(os.path.join(args.out, name), ignore_errors=True)
    check_roundtrip(args.out, summary)
    meta = {"torch": torch.__version__, "transformers": transformers.__version__,
            "python": sys.version.split()[0], "families": summary}
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
    print(json.dumps(meta, indent=1, sort_keys=True))
    return 1 if any("error" in v for v in summary.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
