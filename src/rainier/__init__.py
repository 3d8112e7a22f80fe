"""rainier: a software twin of hyperscale AI computers.

Given a model, a cluster and a goal, rainier estimates training step time, whole-run time and cost,
serving fleet size and the effect of new chip generations, with every hardware number cited.
"""

__version__ = "0.1.0"
