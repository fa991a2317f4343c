"""Prefect flows: the scheduled monthly run and backfills. They only wire stages from `billing`."""
