# PyTorch + PEFT LoRA (r 8, alpha 16, q_proj and v_proj; what `vkpeft bench train --delta lora` trains)
# on the same model folder: ms/step, tokens/s and peak memory, fp32 and bf16 weights.
import sys, time, json, torch, transformers, peft
model_dir, B, T, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
for dtype in (torch.float32, torch.bfloat16):
    torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
    m = transformers.LlamaForCausalLM.from_pretrained(model_dir, dtype=dtype).cuda()
    m = peft.get_peft_model(m, peft.LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                                               target_modules=['q_proj', 'v_proj'], task_type='CAUSAL_LM'))
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-4)
    g = torch.Generator(device='cuda').manual_seed(0)
    V = m.config.vocab_size
    def step():
        ids = torch.randint(4, V, (B, T), device='cuda', generator=g)
        loss = m(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in m.parameters() if p.requires_grad], 1.0)
        opt.step(); opt.zero_grad(set_to_none=True)
        return loss
    torch.cuda.synchronize(); t0 = time.perf_counter(); step(); torch.cuda.synchronize()
    first = time.perf_counter() - t0
    for _ in range(2): step()
    torch.cuda.synchronize(); t0 = time.perf_counter()
    for _ in range(steps): step()
    torch.cuda.synchronize(); ms = (time.perf_counter() - t0) * 1e3 / steps
    print(json.dumps({'torch': torch.__version__, 'peft': peft.__version__, 'model': model_dir, 'dtype': str(dtype),
                      'batch': B, 'len': T, 'first_step_ms': first * 1e3, 'ms_per_step': ms,
                      'tokens_per_second': B * T / ms * 1e3,
                      'peak_allocated_MiB': torch.cuda.max_memory_allocated() / 2**20,
                      'peak_reserved_MiB': torch.cuda.max_memory_reserved() / 2**20}), flush=True)
    del m, opt
