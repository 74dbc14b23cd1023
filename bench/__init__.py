"""`make bench`: a generated dataset, workloads against a mesh started for it, same-run baselines."""
