#!/usr/bin/env python3
"""HF transformers + PyTorch reference for bench/run.sh (issue #8): the same shapes, dtype and
random-init weights as secateur's bench binary, one JSON line per measurement on stdout.

Runs on the GPU machine (torch 2.11 + transformers 5.x). Cases:
  bert_train   BERT-base sequence classification training step, batch 32 x 128, bf16 autocast,
               AdamW; samples/s (median over windows of steps after warm-up); --compile for
               torch.compile.
  llama_eval   LLaMA-shaped decoder evaluation forward with loss, batch 8 x 2048, bf16 weights;
               tokens/s and MFU = 2 * params * tokens / time / 989 TFLOP/s.
  bert_infer   BERT-base classification inference forward, batch 32 x 128, bf16 weights.
Pruned shapes (--pruned): LLaMA with half the heads (whole KV groups: 16 heads, 2 KV heads,
head_dim 64) and half the FFN (2816; --ffn-keep N keeps N neurons instead); BERT with 6 heads of 64 and FFN 1216 (60% removed,
rounded to 64). HF's BertConfig cannot express 6 heads of width 64 in hidden 768, so the
pruned BERT is built by replacing the projections of a dense one, as pruning tools do.
"""
import argparse
import json
import statistics
import sys
import time

import torch

PEAK_BF16_FLOPS = 989e12  # H100 SXM dense bf16


def llama_config(pruned, ffn_keep=0):
    from transformers import LlamaConfig
    return LlamaConfig(vocab_size=32000, hidden_size=2048, num_hidden_layers=22,
                       num_attention_heads=16 if pruned else 32, num_key_value_heads=2 if pruned else 4,
                       head_dim=64, intermediate_size=(ffn_keep or 2816) if pruned else 5632,
                       max_position_embeddings=2048, rms_norm_eps=1e-5, tie_word_embeddings=False,
                       attn_implementation="sdpa")


def bert_model(pruned, num_labels=2):
    from transformers import BertConfig, BertForSequenceClassification
    config = BertConfig(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                        intermediate_size=1216 if pruned else 3072, max_position_embeddings=512,
                        num_labels=num_labels, attn_implementation="sdpa")
    model = BertForSequenceClassification(config)
    if pruned:
        heads, head_dim = 6, 64
        for layer in model.bert.encoder.layer:
            attn = layer.attention.self
            for name in ("query", "key", "value"):
                setattr(attn, name, torch.nn.Linear(768, heads * head_dim))
            layer.attention.output.dense = torch.nn.Linear(heads * head_dim, 768)
            for attr, value in (("num_attention_heads", heads), ("attention_head_size", head_dim),
                                ("all_head_size", heads * head_dim), ("head_dim", head_dim)):
                if hasattr(attn, attr):
                    setattr(attn, attr, value)
    return model


def params_of(model):
    return sum(p.numel() for p in model.parameters())


def sync():
    torch.cuda.synchronize()


def time_windows(step, warmup, steps, window):
    """Runs `warmup` steps, then `steps` steps in windows; returns seconds per step of each window."""
    for _ in range(warmup):
        step()
    sync()
    out = []
    for _ in range(max(1, steps // window)):
        t0 = time.perf_counter()
        for _ in range(window):
            step()
        sync()
        out.append((time.perf_counter() - t0) / window)
    return out


def bench_bert_train(args):
    torch.manual_seed(args.seed)
    model = bert_model(args.pruned).cuda().train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=args.fused)
    b, t = args.batch or 32, args.seq or 128
    ids = torch.randint(0, 30522, (b, t), device="cuda")
    mask = torch.ones(b, t, dtype=torch.long, device="cuda")
    labels = torch.randint(0, 2, (b,), device="cuda")

    def step_fn():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step = torch.compile(step_fn) if args.compile else step_fn
    torch.cuda.reset_peak_memory_stats()
    per_step = time_windows(step, args.warmup, args.steps, args.window)
    s = statistics.median(per_step)
    return {"samples_per_s": b / s, "step_ms": s * 1e3, "windows": len(per_step),
            "params": params_of(model), "peak_mem_gb": torch.cuda.max_memory_allocated() / 2**30}


@torch.inference_mode()
def bench_llama_eval(args):
    from transformers import LlamaForCausalLM
    torch.manual_seed(args.seed)
    model = LlamaForCausalLM(llama_config(args.pruned, args.ffn_keep)).to(device="cuda", dtype=torch.bfloat16).eval()
    b, t = args.batch or 8, args.seq or 2048
    ids = torch.randint(0, 32000, (b, t), device="cuda")

    def step():
        return model(input_ids=ids, labels=ids).loss

    torch.cuda.reset_peak_memory_stats()
    per_step = time_windows(step, args.warmup, args.steps, args.window)
    s = statistics.median(per_step)
    n = params_of(model)
    tokens_per_s = b * t / s
    return {"tokens_per_s": tokens_per_s, "step_ms": s * 1e3, "params": n,
            "mfu": 2 * n * tokens_per_s / PEAK_BF16_FLOPS,
            "peak_mem_gb": torch.cuda.max_memory_allocated() / 2**30}


@torch.inference_mode()
def bench_bert_infer(args):
    torch.manual_seed(args.seed)
    model = bert_model(args.pruned).to(device="cuda", dtype=torch.bfloat16).eval()
    b, t = args.batch or 32, args.seq or 128
    ids = torch.randint(0, 30522, (b, t), device="cuda")
    mask = torch.ones(b, t, dtype=torch.long, device="cuda")

    def step():
        return model(input_ids=ids, attention_mask=mask).logits

    torch.cuda.reset_peak_memory_stats()
    per_step = time_windows(step, args.warmup, args.steps, args.window)
    s = statistics.median(per_step)
    return {"samples_per_s": b / s, "step_ms": s * 1e3, "params": params_of(model),
            "peak_mem_gb": torch.cuda.max_memory_allocated() / 2**30}


CASES = {"bert_train": bench_bert_train, "llama_eval": bench_llama_eval, "bert_infer": bench_bert_infer}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("case", choices=sorted(CASES))
    p.add_argument("--pruned", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--fused", action="store_true", help="fused AdamW (default: PyTorch's default, foreach)")
    p.add_argument("--ffn-keep", type=int, default=0, help="llama_eval --pruned: FFN neurons kept per layer (0: half)")
    p.add_argument("--batch", type=int, default=0)
    p.add_argument("--seq", type=int, default=0)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--window", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = True
    result = CASES[args.case](args)
    result.update({"system": "hf-compile" if args.compile else "hf-eager", "case": args.case,
                   "pruned": args.pruned, "torch": torch.__version__,
                   "device": torch.cuda.get_device_name()})
    try:
        import transformers
        result["transformers"] = transformers.__version__
    except ImportError:
        pass
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    sys.exit(main())
