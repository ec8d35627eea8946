"""Evaluation: image-quality metrics, statistics, quantification and reports."""
