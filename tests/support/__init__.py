"""Helpers shared by the tests: stand-ins for AWS, data sets, DAG runs and fixtures registered by the root conftest."""
