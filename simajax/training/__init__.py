"""Training machinery: optimizer and schedule, device mesh and shardings, checkpoints, logs, steps,
evaluation, SiMA distillation (``distill``), run directories (``run_dir``) and export directories
(``export_dir``).

`simajax.train` is the linear trainer that reads top to bottom; these modules hold its parts.
"""
