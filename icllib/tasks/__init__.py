"""Task families. Importing this package registers every family in `TASKS`. The batch types they produce (`Batch`,
`IOSpec`) live one layer down, in icllib/batch.py."""

from icllib.tasks import cot, mqar, outliers, parity, regression, synthetic  # noqa: F401  (registers the families)
from icllib.tasks.base import TASKS, Task, build_task

__all__ = ["TASKS", "Task", "build_task"]
