"""Training machinery: optimizer and schedule, device mesh and shardings, checkpoints, logs, steps.

`simajax.train` is the linear trainer that reads top to bottom; these modules hold its parts.
"""
