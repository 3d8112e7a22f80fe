# NVIDIA/Megatron-LM examples/post_training/modelopt/speculative.md line 83 (commit d98e8a64)
trtllm-serve <exported checkpoint> --host 0.0.0.0 --port 8000 --backend pytorch --max_batch_size 32 --max_num_tokens 8192 --max_seq_len 8192 --tp_size 8 --extra_llm_api_options extra-llm-api-config.yml
