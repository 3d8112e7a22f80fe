"""Plan search: enumerate every valid parallel layout, evaluate them all (vectorised), rank, Pareto fronts."""
