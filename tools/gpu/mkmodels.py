# Random LLaMA-shaped models in Hugging Face folders (device machine: transformers).
import sys, torch, transformers
out = sys.argv[1]
shapes = {
    'small': dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2,
                  intermediate_size=688, vocab_size=4096),
    '1b': dict(hidden_size=2048, num_hidden_layers=22, num_attention_heads=32, num_key_value_heads=4,
               intermediate_size=5632, vocab_size=32000),
}
for name, s in shapes.items():
    cfg = transformers.LlamaConfig(max_position_embeddings=2048, rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2,
                                   tie_word_embeddings=False, **s)
    torch.manual_seed(0)
    with torch.device('cuda'):
        m = transformers.LlamaForCausalLM(cfg).to(torch.float16)
    m.save_pretrained(f'{out}/{name}', safe_serialization=True)
    print(name, sum(p.numel() for p in m.parameters()), 'parameters', flush=True)
