"""A package of task declarations outside `studio/tasks/`, found the same way the studio finds its own."""
