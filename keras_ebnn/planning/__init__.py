"""Planning: the arena planner, stack bounds, boards and their budgets."""
