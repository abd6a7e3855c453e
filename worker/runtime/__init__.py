"""What runs the jobs: the queue path, per-job context, hooks and runs, retries, failure
records, group commit, health, metrics and logs. Services and repositories never import it."""
