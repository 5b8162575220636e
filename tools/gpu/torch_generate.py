# Greedy generation with Hugging Face transformers (KV cache) on the same folders and shapes as
# `vkpeft bench generate --batch 4 --prompt-len 32 --new-tokens 32`: prefill and decode tokens/s, bf16.
import sys, time, json, torch, transformers
for d in sys.argv[1:]:
    m = transformers.LlamaForCausalLM.from_pretrained(d, dtype=torch.bfloat16).cuda().eval()
    ids = torch.randint(4, m.config.vocab_size, (4, 32), device='cuda', generator=torch.Generator('cuda').manual_seed(0))
    with torch.no_grad():
        for _ in range(2): m.generate(ids, max_new_tokens=32, min_new_tokens=32, do_sample=False)
        torch.cuda.synchronize(); t0 = time.perf_counter()
        for _ in range(3): m(ids)
        torch.cuda.synchronize(); pre = (time.perf_counter() - t0) / 3
        t0 = time.perf_counter()
        for _ in range(3): m.generate(ids, max_new_tokens=32, min_new_tokens=32, do_sample=False)
        torch.cuda.synchronize(); tot = (time.perf_counter() - t0) / 3
    print(json.dumps({'model': d, 'prefill_tokens_per_s': 4 * 32 / pre, 'decode_tokens_per_s': 4 * 31 / max(tot - pre, 1e-9)}), flush=True)
