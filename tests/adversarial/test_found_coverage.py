"""Every problem issue #11 found (each reproduced on the code before it) is pinned by a test:
this table names, for each, the tests that show it fixed, and fails when one of them is gone
(renamed, deleted, or a case id dropped from its table)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]

#: What was found -> the tests that show it fixed: ``file::function`` or ``file::function[case]``.
FOUND: dict[str, list[str]] = {
    "gc during a run deleted artifacts of tasks then recorded done": [
        "execute/test_gc_race.py::test_gc_in_a_tight_loop_during_runs_loses_no_artifact",
        "adversarial/test_gc.py::test_case[gc-keeps-a-file-pending-for-a-live-run]",
        "test_pending_artifacts.py::test_recording_waits_while_gc_holds_its_lock",
    ],
    "gc in a folder holding a study file and results.db deleted them": [
        "adversarial/test_gc.py::test_case[gc-in-a-study-folder]",
        "adversarial/test_gc.py::test_case[gc-leaves-foreign-files-in-a-store]",
    ],
    "gc, results and sql created an empty database wherever --db pointed": [
        "adversarial/test_gc.py::test_case[gc-typo-db-creates-nothing]",
        "adversarial/test_database.py::test_case[missing-db-results]",
        "adversarial/test_database.py::test_case[missing-db-sql]",
    ],
    "sql committed DELETE, DROP, UPDATE; ATTACH created files anywhere": [
        "adversarial/test_database.py::test_case[sql-delete]",
        "adversarial/test_database.py::test_case[sql-drop-table]",
        "adversarial/test_database.py::test_case[sql-update]",
        "adversarial/test_database.py::test_case[sql-attach]",
        "adversarial/test_database.py::test_postgresql_sql_is_read_only",
    ],
    "a 1 KB YAML alias bomb took minutes and gigabytes": [
        "adversarial/test_study_files.py::test_case[alias-bomb-10-to-the-7]",
        "adversarial/test_study_files.py::test_case[alias-bomb-10-to-the-9-on-run]",
        "test_spec_bounds.py::test_a_billion_laughs_is_refused_in_milliseconds",
    ],
    "a 10^5-task sweep validated silently and run claimed it all at once": [
        "adversarial/test_study_files.py::test_case[sweep-past-max-tasks]",
        "test_spec_bounds.py::test_a_million_task_sweep_is_refused_at_once",
        "execute/test_faults.py::test_work_is_claimed_in_bounded_batches",
        "execute/test_faults.py::test_two_runners_share_a_sweep_each_task_once",
    ],
    "report: raw <script> in report.md, CSV formulas, emoji names sharing one figure file": [
        "adversarial/test_report_names.py::test_case[no_raw_html_in_markdown]",
        "adversarial/test_report_names.py::test_case[csv_formula_names_prefixed]",
        "adversarial/test_report_names.py::test_case[emoji_names_get_distinct_files]",
    ],
    "a runner waited forever for an upstream task whose runner was killed": [
        "execute/test_faults.py::"
        "test_killed_holder_of_an_upstream_train_task_is_taken_over_after_its_lease",
        "adversarial/test_faults.py::test_case[upstream-train-of-a-dead-process-taken-over]",
    ],
    "a runner killed after claiming a group orphaned its tasks while another exited 0": [
        "execute/test_faults.py::"
        "test_killed_runners_claimed_group_is_taken_over_by_the_runner_waiting_for_it",
        "adversarial/test_faults.py::test_case[task-of-a-dead-process-taken-over]",
    ],
    "SIGTERM left tasks running; Ctrl-C exited 1": [
        "execute/test_faults.py::test_signal_stops_the_run_cleanly_and_a_rerun_completes",
        "adversarial/test_faults.py::test_case[sigterm-while-waiting]",
        "adversarial/test_faults.py::test_case[ctrl-c-while-waiting]",
    ],
    "bad, damaged or unreachable databases and full disks ended in tracebacks": [
        "adversarial/test_database.py::test_case[truncated-db]",
        "adversarial/test_database.py::test_case[garbage-db]",
        "adversarial/test_database.py::test_case[text-file-as-db]",
        "adversarial/test_database.py::test_case[not-a-url]",
        "adversarial/test_database.py::test_case[db-in-missing-folder]",
        "adversarial/test_database.py::test_case[db-under-a-file]",
        "adversarial/test_database.py::test_run_on_a_full_disk_is_one_paragraph",
        "adversarial/test_database.py::test_unreachable_postgresql_hides_the_password",
    ],
    "same-size corruption: a checkpoint cached forever, a correct file dropping intervals": [
        "execute/test_gc_race.py::test_corrupted_checkpoint_reruns_train_and_its_dependants",
        "adversarial/test_gc.py::test_case[verify-corrupted-file]",
        "report/test_report_integrity.py::"
        "test_a_corrupted_correct_file_is_reported_and_its_intervals_left_out",
    ],
    "tasks.seconds counted from the fused group's claim": [
        "execute/test_faults.py::test_tasks_seconds_is_each_tasks_own_time",
    ],
    "caught only at run time: names, tags, weights, layers, features, params, data, names": [
        "adversarial/test_study_files.py::test_case[timm-misspelled-name]",
        "adversarial/test_study_files.py::test_case[timm-unknown-pretrained-tag]",
        "adversarial/test_study_files.py::test_case[timm-weights-not-offline]",
        "adversarial/test_study_files.py::test_case[layer-out-of-range]",
        "adversarial/test_study_files.py::test_case[feature-out-of-range]",
        "adversarial/test_study_files.py::test_case[betas-out-of-range]",
        "adversarial/test_study_files.py::test_case[seed-past-2-63-on-run]",
        "adversarial/test_study_files.py::test_case[timm-heads-do-not-divide-embed-dim]",
        "adversarial/test_study_files.py::test_case[fgbg-without-boxes]",
        "adversarial/test_study_files.py::test_case[dataset-root-empty-folder]",
        "adversarial/test_study_files.py::test_case[dataset-root-without-images]",
        "adversarial/test_study_files.py::test_case[dataset-flat-without-labels]",
        "adversarial/test_study_files.py::test_case[env-variable-default-empty]",
        "adversarial/test_study_files.py::test_case[env-variable-set-empty]",
        "adversarial/test_study_files.py::test_case[name-300-characters]",
        "adversarial/test_study_files.py::test_case[not-utf8]",
        "adversarial/test_study_files.py::test_case[device-missing-cuda-on-run]",
        "adversarial/test_study_files.py::test_case[device-gpu-on-run]",
    ],
    "silently wrong: NaN radii, std 0, NaN mean, two entries of one model": [
        "adversarial/test_study_files.py::test_case[radius-nan]",
        "adversarial/test_study_files.py::test_case[preprocess-std-zero]",
        "adversarial/test_study_files.py::test_case[preprocess-mean-nan]",
        "adversarial/test_study_files.py::test_case[two-models-one-identity]",
    ],
    "silently wrong data: 16-bit PNGs, boxes outside or infinite, all-unreadable datasets": [
        "adversarial/test_data_inputs.py::test_decode_matches_numpy[png-16bit-I;16]",
        "adversarial/test_data_inputs.py::test_box_file[wholly-outside-dropped]",
        "adversarial/test_data_inputs.py::test_an_inf_box_does_not_touch_kinds_without_boxes",
        "adversarial/test_data_inputs.py::test_all_unreadable_dataset_is_refused_naming_the_folder",
        "adversarial/test_data_inputs.py::"
        "test_all_unreadable_images_found_at_run_time_name_the_folder",
    ],
    "Table 1 printed the largest insertion layer measured, not L = depth - 1": [
        "adversarial/test_report_names.py::test_case[table1_depth_minus_one_not_largest]",
        "adversarial/test_report_names.py::test_case[table1_not_measured]",
    ],
    "global options refused after the command name": [
        "adversarial/test_database.py::test_case[run-db-after-command]",
        "test_cli_output.py::test_global_options_after_the_command_name",
    ],
    "README and docs numbers stale": [
        "test_demo_numbers.py::test_check_finds_a_stale_number_and_changes_nothing",
        "test_demo_numbers.py::test_the_repository_docs_carry_every_marker",
    ],
    "ETA far off": [
        "execute/test_display_eta.py::test_cost_doubling_halfway_is_predicted_when_items_report_their_cost",
        "execute/test_display_eta.py::test_a_stall_raises_the_eta_instead_of_freezing_it",
    ],
    "results too wide, timestamps as floats, kinds as Python reprs": [
        "test_cli_output.py::test_results_compact_by_default",
        "test_cli_output.py::test_sql_shows_times_as_iso_utc_in_tables_and_raw_in_csv",
        "test_cli_output.py::test_kinds_prints_params_as_yaml_that_loads_back_to_the_defaults",
    ],
}


@pytest.fixture(scope="module")
def collected() -> set[str]:
    """The node ids pytest collects from every file the table names (one collection run)."""
    files = sorted({ref.split("::")[0] for refs in FOUND.values() for ref in refs})
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "--collect-only",
                          "-p", "no:cacheprovider", *files], cwd=TESTS, capture_output=True,
                         text=True, timeout=300)
    return {line.strip() for line in out.stdout.splitlines() if "::" in line}


@pytest.mark.parametrize("found", sorted(FOUND), ids=lambda s: s[:40])
def test_each_found_problem_is_pinned_by_a_test(found: str, collected: set[str]) -> None:
    ids = {node.split("/", 1)[-1] if node.startswith("tests/") else node for node in collected}
    missing = [ref for ref in FOUND[found]
               if ref not in ids and not any(i.startswith(ref + "[") for i in ids)]
    assert not missing, f"{found}: tests gone: {missing}"
