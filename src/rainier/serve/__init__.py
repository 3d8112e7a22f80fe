"""Inference serving: discrete-event simulation of LLM serving engines (continuous and static batching, KV-cache
admission and preemption, chunked prefill, disaggregated prefill/decode pools) and trace reading.

The simulator (:mod:`rainier.serve.simulate`) takes the time of one engine iteration from an
:class:`~rainier.serve.simulate.IterationCost`, so the serving model and the hardware cost model stay separate.
"""
