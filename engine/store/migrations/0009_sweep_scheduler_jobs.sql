-- The scheduler's jobs that ran each sweep job (Slurm, or submitit's local executor): a JSON list of
-- {"executor", "job_id", "host", "log"}, one per attempt in the order they started (a job cancelled,
-- then resumed by a rerun of the sweep, lists both). Empty for jobs run by the basic or joblib launcher.
ALTER TABLE sweep_jobs ADD COLUMN scheduler_jobs JSON;
