"""What runs the jobs: ARQ wiring, the queue path, per-job context and hooks, retries, failure
records, group commit, health, metrics and logs. Services and repositories never import it."""
