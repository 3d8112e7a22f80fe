"""Cost models: compute, memory, collectives and pipeline, combined into a StepEstimate."""
