# sgl-project/sglang benchmark/deepseek_v3/README.md, "Example: Serving with two H20*8 nodes", node 1 (commit 0006053c)
python3 -m sglang.launch_server --model-path deepseek-ai/DeepSeek-V3 --tp 16 --dist-init-addr 10.0.0.1:5000 --nnodes 2 --node-rank 0 --trust-remote-code
