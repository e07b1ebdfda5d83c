"""The budget study: every method, from every pretraining budget, on every domain and set size.

`plan` lists and prices the steps, `run` runs them (manifest, time model, dry run)
and `results` reads them back for the notebooks.
"""
from .plan import Plan, make_plan
from .results import StudyResults, find_scale, has_corpus, has_study, load_study, macro_points
from .run import Rates, StudyReport, describe_plan, manifest_path, read_manifest, run_study

__all__ = ["Plan", "Rates", "StudyReport", "StudyResults", "describe_plan", "find_scale", "has_corpus", "has_study",
           "load_study", "macro_points", "make_plan", "manifest_path", "read_manifest", "run_study"]
