#!/usr/bin/env python3
"""The PEFT baseline of the GPU performance issue, run on the same GPU as `lorafleet bench engine`.

Hugging Face transformers + peft `generate` on a random Llama-2-7B-shaped model in bf16:
batch 32, 64-token prompts, 64 new tokens (greedy, no early stop), rank-16 LoRA adapters on
all seven projections, the batch's rows spread over k distinct adapters through peft's
`adapter_names` (mixed-adapter batches), and the base model alone. Prints and writes
tokens/s per case as JSON, which `lorafleet bench engine --peft FILE` puts beside its own
numbers.

Needs torch with CUDA, transformers and peft (the lent GPU machine has them). Random weights:
only the shapes matter for speed.
"""
import argparse
import json
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def timed_generate(model, ids, new_tokens, **kw):
    """Seconds for one generate call of new_tokens tokens, after a short warm-up call."""
    args = dict(attention_mask=torch.ones_like(ids), do_sample=False, pad_token_id=0, **kw)
    model.generate(ids, max_new_tokens=2, min_new_tokens=2, **args)
    torch.cuda.synchronize()
    start = time.perf_counter()
    out = model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, **args)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    assert out.shape[1] == ids.shape[1] + new_tokens, out.shape
    return seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--prompt", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--adapters", default="1,8,32", help="distinct adapters per batch")
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--layers", type=int, default=32, help="fewer for a quick check of the script")
    ap.add_argument("--out", help="JSON file for the results")
    a = ap.parse_args()
    ks = [int(k) for k in a.adapters.split(",")]

    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=a.layers,
                      num_attention_heads=32, num_key_value_heads=32, vocab_size=32000,
                      max_position_embeddings=4096)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg)
    model.eval()
    ids = torch.randint(0, cfg.vocab_size, (a.batch, a.prompt), device="cuda")
    tokens = a.batch * a.new_tokens
    results = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
               "batch": a.batch, "prompt": a.prompt, "new_tokens": a.new_tokens, "rank": a.rank,
               "layers": a.layers, "cases": []}

    def report(name, k, seconds):
        case = {"case": name, "adapters": k, "seconds": seconds, "tokens_per_s": tokens / seconds}
        results["cases"].append(case)
        print(f"{name:>12} k={k:<3} {seconds:8.2f} s  {tokens / seconds:9.1f} tok/s", flush=True)
        if a.out:  # after each case, so a run stopped by a time limit keeps what it measured
            with open(a.out, "w") as f:
                json.dump(results, f, indent=2)

    with torch.no_grad():
        report("base", 0, timed_generate(model, ids, a.new_tokens))
        lora = LoraConfig(r=a.rank, lora_alpha=2 * a.rank, target_modules=PROJECTIONS,
                          init_lora_weights=False)  # random B too: a real update on every row
        model = get_peft_model(model, lora, adapter_name="a0")
        for i in range(1, max(ks)):
            model.add_adapter(f"a{i}", lora)
        model.eval()
        for k in ks:
            names = [f"a{i * k // a.batch}" for i in range(a.batch)]
            report("peft", k, timed_generate(model, ids, a.new_tokens, adapter_names=names))


if __name__ == "__main__":
    main()
