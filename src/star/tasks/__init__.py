"""Tasks as data: reading JSONL/CSV files (no torch), task specs, answer extraction, the
built-in tasks and their shipped files, and resolving a run's task."""
