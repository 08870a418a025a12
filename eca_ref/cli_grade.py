"""CLI of the coursework harness: ``eca-ref assignment init|rubric`` and ``eca-ref grade``."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from eca_ref.cli_types import SEED
from eca_ref.errors import InputError


def _console():
    from eca_ref.cli_console import make_console

    return make_console(soft_wrap=False)


@click.group("assignment")
def assignment():
    """Hand out the students' starter (see docs/grading-teachers.md)."""


@assignment.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite eca_assignment.py / README.md if they exist.")
@click.option("--notebook", is_flag=True,
              help="Write eca_assignment.ipynb (Jupyter; needs the [notebook] extra) instead of the .py.")
def assignment_init(directory, force, notebook):
    """Write the starter (eca_assignment.py or .ipynb, README.md) into DIRECTORY."""
    from eca_ref.grading import STARTER_VERSION, init_assignment

    for path in init_assignment(directory, force=force, notebook=notebook):
        click.echo(f"wrote {path}")
    if notebook:
        click.echo(f"starter version {STARTER_VERSION}: students implement eca_assignment.ipynb and check it "
                   f"by running its last cell")
    else:
        click.echo(f"starter version {STARTER_VERSION}: students implement eca_assignment.py and check it with "
                   f"`python eca_assignment.py`")


@assignment.command("rubric")
@click.option("--points", "points_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="JSON {entry name: points} that overrides the default points.")
@click.option("--json", "as_json", is_flag=True, help="Print the rubric as JSON (a points file to edit).")
def assignment_rubric(points_file, as_json):
    """Show the rubric: entries, points, what each checks."""
    from rich.table import Table

    from eca_ref.grading import load_points, rubric_with_points

    rubric = rubric_with_points(load_points(points_file) if points_file else None)
    if as_json:
        click.echo(json.dumps({e.name: e.points for e in rubric}, indent=2))
        return
    table = Table(title=f"rubric: {sum(e.points for e in rubric)} points", title_justify="left")
    for col in ("entry", "points", "kind", "checks"):
        table.add_column(col)
    for e in rubric:
        table.add_row(e.name, str(e.points), e.kind, e.description)
    _console().print(table)


@assignment.command("autograder")
@click.argument("out_zip", metavar="OUT.zip", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--points", "points_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="JSON {entry name: points} that overrides the default points.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the random inputs.")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=5.0, show_default=True, help="Seconds per test.")
@click.option("--total-timeout", type=click.FloatRange(min=0.1), default=120.0, show_default=True,
              help="Seconds for a whole submission.")
@click.option("--memory", "memory_mb", type=click.IntRange(min=128), default=512, show_default=True,
              help="Memory limit of the submission's process, MiB (Gradescope's container: about 768 MB).")
@click.option("--hidden", multiple=True, metavar="ENTRY",
              help="Hide this rubric entry's test from students (repeatable; 'all' for every test).")
@click.option("--after-published", multiple=True, metavar="ENTRY",
              help="Show this test only once grades are published (repeatable; 'all').")
@click.option("--wheel", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="Bundle this eca-ref wheel instead of building one from the installed source.")
@click.option("--force", is_flag=True, help="Overwrite OUT.zip if it exists.")
def assignment_autograder(out_zip, points_file, seed, timeout, total_timeout, memory_mb, hidden, after_published,
                          wheel, force):
    """Write the Gradescope autograder zip (setup.sh, run_autograder, this eca-ref as a wheel, the options)."""
    from eca_ref.grading import load_points
    from eca_ref.grading.autograder import make_config, write_autograder

    if out_zip.exists() and not force:
        raise InputError(f"{out_zip} already exists; pass --force to overwrite")
    visibility = {**{n: "hidden" for n in hidden}, **{n: "after_published" for n in after_published}}
    config = make_config(points=load_points(points_file) if points_file else None, seed=seed, timeout=timeout,
                         total_timeout=total_timeout, memory_mb=memory_mb, visibility=visibility)
    names = write_autograder(out_zip, config, wheel=wheel)
    click.echo(f"wrote {out_zip}: {', '.join(names)}")
    click.echo(f"eca-ref {config['eca_ref_version']}, {sum(config['points'].values())} points, seed {seed}; "
               f"upload it as the autograder of a Gradescope programming assignment")


@click.command("grade")
@click.argument("submission", type=click.Path(path_type=Path), required=False)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write Gradescope's results.json here (one submission).")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Folder mode: the CSV of scores (default FOLDER/grades.csv).")
@click.option("--report-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder mode: also write one Gradescope JSON per submission here.")
@click.option("--seed", type=SEED, default=0, show_default=True,
              help="Seed of the random inputs, 0 <= SEED < 2**32.")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=5.0, show_default=True,
              help="Seconds per test (and for importing the submission).")
@click.option("--total-timeout", type=click.FloatRange(min=0.1), default=120.0, show_default=True,
              help="Seconds for a whole submission.")
@click.option("--memory", "memory_mb", type=click.IntRange(min=128), default=1024, show_default=True,
              help="Memory limit of the submission's process, MiB.")
@click.option("--points", "points_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="JSON {entry name: points} to change the points (see `eca-ref assignment rubric --json`).")
@click.option("-v", "--verbose", is_flag=True, help="Print every case of every test and the submission's output.")
@click.option("--sandbox", "sandbox_level", type=click.Choice(["auto", "namespaces", "userns", "none"]),
              default=None, help="Sandbox level (default auto, or $ECA_GRADE_SANDBOX); a level this platform "
                                 "lacks is an error.")
@click.option("--sandbox-info", is_flag=True, help="Print which protections are in force here, then exit.")
def grade(submission, json_path, csv_path, report_dir, seed, timeout, total_timeout, memory_mb, points_file,
          verbose, sandbox_level, sandbox_info):
    """Grade SUBMISSION (.py or .ipynb), or every .py/.ipynb in a folder, against the reference.

    The submission runs in a separate process with time and memory limits; the
    report lists each test with its points and the measured error or the first
    failure. Exit status 0 when grading finished (whatever the score), 2 on bad
    input (missing file, bad points file).
    """
    from eca_ref.grading import grade_folder, grade_submission, load_points, rubric_with_points, write_csv, \
        write_json
    from eca_ref.grading.report import folder_table, result_table
    from eca_ref.grading.similarity import note_for_file

    from eca_ref.grading.grade import check_outputs, find_submissions
    from eca_ref.grading.sandbox import detect

    if sandbox_info:
        for line in detect(sandbox_level).lines():
            click.echo(line)
        return
    if submission is None:
        raise InputError("missing SUBMISSION (a .py file or a folder); or use --sandbox-info")
    rubric = rubric_with_points(load_points(points_file) if points_file else None)
    opts = dict(rubric=rubric, seed=seed, timeout=timeout, total_timeout=total_timeout, memory_mb=memory_mb,
                sandbox_level=sandbox_level)
    console = _console()
    if not submission.exists():
        raise InputError(f"submission not found: {submission}")
    if submission.is_dir():
        if json_path is not None:
            raise InputError("--json is for one submission; for a folder use --csv and --report-dir")
        csv_path = csv_path or submission / "grades.csv"
        check_outputs([csv_path], find_submissions(submission) + [points_file])
        if not csv_path.parent.is_dir():
            raise InputError(f"folder of --csv does not exist: {csv_path.parent}")
        if report_dir is not None:
            report_dir.mkdir(parents=True, exist_ok=True)

        def progress(i, n, path):
            console.print(f"[{i + 1}/{n}] grading {path.name}", highlight=False, markup=False)

        results = grade_folder(submission, progress=progress, **opts)
        written = 0
        for r in results:
            if report_dir is not None:
                target = report_dir / (Path(r.submission).stem + ".json")
                check_outputs([target], [submission / r.submission, points_file])
                write_json(r, target)
                written += 1
        write_csv(results, csv_path, rubric)
        console.print(folder_table(results))
        for r in results:  # near-copies of the reference: a note to the teacher, never a change of score
            note = note_for_file(submission / r.submission)
            if note:
                click.echo(f"note: {r.submission}: {note}")
        click.echo(f"wrote {csv_path}" + (f" and {written} reports in {report_dir}" if report_dir else ""))
        return
    if csv_path is not None or report_dir is not None:
        raise InputError("--csv and --report-dir are for a folder of submissions; for one file use --json")
    if json_path is not None and not (json_path.parent if str(json_path.parent) else Path(".")).is_dir():
        raise InputError(f"folder of --json does not exist: {json_path.parent}")
    check_outputs([json_path], [submission, points_file])
    result = grade_submission(submission, **opts)
    if json_path is not None:
        write_json(result, json_path)
    console.print(result_table(result))
    for note in result.notes:
        console.print(f"note: {note}", highlight=False, markup=False)
    teacher_note = note_for_file(submission)  # near-copies of the reference: never a change of score
    if teacher_note:
        click.echo(f"note: {teacher_note}")
    if verbose:
        for t in result.tests:
            console.print(f"\n{t.name} {t.score}/{t.max_score}\n{t.output}", highlight=False, markup=False)
        if result.stdout.strip():
            console.print("\nthe submission's stdout:\n" + result.stdout, highlight=False, markup=False)
        if result.stderr.strip():
            console.print("\nthe submission's stderr:\n" + result.stderr, highlight=False, markup=False)
    if json_path is not None:
        click.echo(f"wrote {json_path}")
    sys.stdout.flush()


COMMANDS = [assignment, grade]
