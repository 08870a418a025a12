"""The coursework harness: hand out a starter, grade untrusted submissions safely.

    from eca_ref.grading import init_assignment, grade_submission, grade_folder
    init_assignment("handout/")                 # eca_assignment.py + README.md
    result = grade_submission("alice.py", seed=0)
    result.score, result.max_score

The submission runs in a separate, limited process (:mod:`eca_ref.grading.runner`);
the reference answers (:mod:`eca_ref.grading.solution`) are computed in the
grader's process after that process has ended. See docs/grading-teachers.md.
"""
from eca_ref.grading.grade import (DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT, DEFAULT_TOTAL_TIMEOUT, GradeResult,
                                   TestResult, find_submissions, grade_folder, grade_source, grade_submission)
from eca_ref.grading.report import gradescope_dict, write_csv, write_json
from eca_ref.grading.rubric import DEFAULT_RUBRIC, RubricEntry, load_points, rubric_with_points
from eca_ref.grading.starter import STARTER_VERSION, init_assignment, starter_source, student_readme

__all__ = ["STARTER_VERSION", "DEFAULT_RUBRIC", "RubricEntry", "GradeResult", "TestResult", "init_assignment",
           "starter_source", "student_readme", "grade_submission", "grade_source", "grade_folder",
           "find_submissions", "gradescope_dict", "write_json", "write_csv", "load_points",
           "rubric_with_points", "DEFAULT_TIMEOUT", "DEFAULT_TOTAL_TIMEOUT", "DEFAULT_MEMORY_MB"]
