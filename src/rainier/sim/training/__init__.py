"""Training-step simulation: the op graph of one step, a flow-level network, and their run on ``sim.kernel``.

``simulate(shape, plan, cluster)`` takes the inputs of ``perf.step.estimate`` and returns a ``SimulatedStep``
(step time, critical path, busy streams and links, the difference from the estimate and its cause).
"""

from rainier.sim.training.simulate import LinkUse, PathSegment, SimulatedStep, simulate, step_graph

__all__ = ["LinkUse", "PathSegment", "SimulatedStep", "simulate", "step_graph"]
