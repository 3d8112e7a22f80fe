# sgl-project/sglang benchmark/benchmark_dsv3/README.md, "Online benchmarks / DeepSeek V3 on 8xH200 (single-node) / BF16" launch line (commit 26db155e)
python3 -m sglang.launch_server --model deepseek-ai/DeepSeek-V3 --tp 8 --trust-remote-code --enable-torch-compile --enable-dp-attention --mem-fraction-static 0.8 --disable-cuda-graph
