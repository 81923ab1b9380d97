"""eval: evaluations of models over a dataset's TEST split (head-to-head, criterion, code)."""
