-- CPU requests become fractional: stored in thousandths of a CPU.
ALTER TABLE jobs RENAME COLUMN cpus TO millicpus;
UPDATE jobs SET millicpus = millicpus * 1000;
