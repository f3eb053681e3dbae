"""Evaluation of a trained detector: metrics, charts, sample drawings, the HTML report, the promotion gate."""
