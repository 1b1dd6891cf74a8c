"""RQ jobs and the worker entry point (`python -m jobs.worker`)."""
