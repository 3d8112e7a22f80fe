# vllm-project/vllm-project.github.io _posts/2024-07-23-llama31.md line 44 (commit c3a01c4a), without the '$ ' prompt
vllm serve meta-llama/Meta-Llama-3.1-405B-Instruct-FP8 --tensor-parallel-size 8
