"""The scan-time sweep: every method at every acquisition duration, task-based figures of merit."""
