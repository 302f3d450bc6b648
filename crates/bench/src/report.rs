//! The results: per step and side the best time, every run, statements,
//! rows/s and the checksum verdict; the keel/baseline ratio; the issue's
//! targets; and the stdout table, JSON and Markdown built from them.

use std::fmt::{Display, Write as _};

use serde::Serialize;

use crate::steps::{Backend, Mode, Run, Step, TableSeconds};

/// One side of a step (keel-repo or the baseline), over all its runs.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    /// What ran: `keel-repo sync`, `rusqlite`, `postgres`, `tokio-postgres`.
    pub driver: &'static str,
    /// The best run's wall-clock seconds.
    pub seconds: f64,
    /// Every run's seconds, in order.
    pub runs: Vec<f64>,
    /// Statements the best run sent.
    pub statements: u64,
    /// Rows the best run inserted or read.
    pub rows: u64,
    /// `rows / seconds` of the best run.
    pub rows_per_second: f64,
    /// Per-table seconds of the best run, for loads.
    pub tables: Option<TableSeconds>,
    /// The checksum of the first run that got it wrong, else of the best run.
    pub checksum: String,
    /// Every run's checksum equalled the expected one.
    pub checksum_ok: bool,
}

impl Side {
    /// Summarises `runs`, checking each checksum against `expected`; each
    /// mismatch is added to `failures`, labelled with `label`.
    pub fn from_runs<T: PartialEq + Display>(
        driver: &'static str,
        runs: Vec<Run<T>>,
        expected: &T,
        label: &str,
        failures: &mut Vec<String>,
    ) -> Option<Self> {
        let best = runs.iter().min_by(|a, b| a.elapsed.cmp(&b.elapsed))?;
        let wrong = runs.iter().find(|run| run.checksum != *expected);
        for (i, run) in runs.iter().enumerate() {
            if run.checksum != *expected {
                failures.push(format!(
                    "{label} {driver} run {}: checksum {} (expected {expected})",
                    i + 1,
                    run.checksum
                ));
            }
        }
        let seconds = best.elapsed.as_secs_f64();
        Some(Self {
            driver,
            seconds,
            runs: runs.iter().map(|r| r.elapsed.as_secs_f64()).collect(),
            statements: best.statements,
            rows: best.rows,
            rows_per_second: if seconds > 0.0 {
                best.rows as f64 / seconds
            } else {
                0.0
            },
            tables: best.tables,
            checksum: wrong.unwrap_or(best).checksum.to_string(),
            checksum_ok: wrong.is_none(),
        })
    }
}

/// One step on one backend in one mode.
#[derive(Debug, Clone, Serialize)]
pub struct StepResult {
    /// The backend.
    pub backend: Backend,
    /// keel-repo's mode (the baseline's driver follows it on PostgreSQL).
    pub mode: Mode,
    /// The step.
    pub step: Step,
    /// WORKLOAD.md's name for it.
    pub title: &'static str,
    /// The checksum every run must produce.
    pub expected: String,
    /// keel-repo's side; `None` for the reference step B7.
    pub keel: Option<Side>,
    /// The hand-written side.
    pub baseline: Option<Side>,
    /// keel's best seconds over the baseline's best seconds.
    pub ratio: Option<f64>,
}

impl StepResult {
    /// A result from its two sides.
    pub fn new(
        backend: Backend,
        mode: Mode,
        step: Step,
        expected: String,
        keel: Option<Side>,
        baseline: Option<Side>,
    ) -> Self {
        let ratio = match (&keel, &baseline) {
            (Some(k), Some(b)) if b.seconds > 0.0 => Some(k.seconds / b.seconds),
            _ => None,
        };
        Self {
            backend,
            mode,
            step,
            title: step.title(),
            expected,
            keel,
            baseline,
            ratio,
        }
    }

    /// Every run of both sides got the expected checksum.
    pub fn checksums_ok(&self) -> bool {
        [&self.keel, &self.baseline]
            .into_iter()
            .flatten()
            .all(|side| side.checksum_ok)
    }
}

/// One of issue 6's targets, checked on one result.
#[derive(Debug, Clone, Serialize)]
pub struct TargetCheck {
    /// The backend.
    pub backend: Backend,
    /// The mode.
    pub mode: Mode,
    /// The step.
    pub step: Step,
    /// The target, in words.
    pub target: String,
    /// What this run measured.
    pub actual: String,
    /// Met or not.
    pub met: bool,
    /// Why it was missed and what would close it.
    pub why: Option<String>,
}

/// Issue 6's targets for the results that have both sides.
pub fn check_targets(results: &[StepResult]) -> Vec<TargetCheck> {
    let mut checks = Vec::new();
    for result in results {
        let (Some(keel), Some(baseline), Some(ratio)) =
            (&result.keel, &result.baseline, result.ratio)
        else {
            continue;
        };
        let (backend, mode, step) = (result.backend, result.mode, result.step);
        let (target, actual, met) = match step {
            Step::B1 => {
                let floor = match backend {
                    Backend::Postgres => 0.85,
                    Backend::Sqlite => 0.9,
                };
                let share = if baseline.rows_per_second > 0.0 {
                    keel.rows_per_second / baseline.rows_per_second
                } else {
                    0.0
                };
                (
                    format!("rows/s >= {floor:.2} x hand-written"),
                    format!("{share:.3} x"),
                    share >= floor,
                )
            }
            Step::B2 => ratio_target(ratio, 1.15),
            Step::B4 | Step::B5 => {
                let ceiling = match (mode, backend) {
                    (Mode::Sync, _) => 1.2,
                    (Mode::Async, Backend::Postgres) => 1.3,
                    (Mode::Async, Backend::Sqlite) => 1.5,
                };
                ratio_target(ratio, ceiling)
            }
            Step::B6 => {
                let lookups = baseline.statements;
                let (target, actual, met) = ratio_target(ratio, 1.2);
                (
                    format!("{target}, exactly {lookups} statements"),
                    format!("{actual}, {} statements", keel.statements),
                    met && keel.statements == lookups,
                )
            }
            Step::B3 | Step::B7 => continue,
        };
        checks.push(TargetCheck {
            backend,
            mode,
            step,
            why: (!met).then(|| miss_reason(step, backend, mode, keel)),
            target,
            actual,
            met,
        });
    }
    checks
}

fn ratio_target(ratio: f64, ceiling: f64) -> (String, String, bool) {
    (
        format!("ratio <= {ceiling:.2}"),
        format!("{ratio:.2}"),
        ratio <= ceiling,
    )
}

/// Why a target was missed, as far as the bench can tell, and what would
/// close the gap.
fn miss_reason(step: Step, backend: Backend, mode: Mode, keel: &Side) -> String {
    match (step, backend, mode) {
        (Step::B1, Backend::Postgres, _) => format!(
            "keel's create_many sends one multi-row INSERT ... RETURNING per chunk of 65535 binds \
             ({} statements) and builds every returned row, against 3 binary COPYs that return \
             nothing. Closing it: a COPY ... FROM STDIN path (diesel copy_from, on a blocking task \
             in async mode) for bulk loads whose caller does not need the rows back, with the \
             chunked INSERT as fallback.",
            keel.statements
        ),
        (Step::B1, Backend::Sqlite, _) => format!(
            "keel's create_many sends one multi-row INSERT ... RETURNING per chunk ({} \
             statements) and builds every returned row; the baseline's INSERTs return nothing and \
             run in one transaction (keel's three create_many calls commit three times, as they \
             cannot join an open transaction on SQLite). Closing it: an insert-only bulk path \
             (no RETURNING) that can run inside a caller's transaction.",
            keel.statements
        ),
        (Step::B6, _, _) if keel.statements > 10_000 => format!(
            "keel sent {} statements for 10000 lookups: something runs per checkout (a health \
             check?). Closing it: no test query on checkout.",
            keel.statements
        ),
        (Step::B2, Backend::Sqlite, Mode::Async) => "async SQLite runs each statement through \
            diesel-async's SyncConnectionWrapper, one blocking-pool hop per statement. Closing it: \
            run the whole repository call in one spawn_blocking on the wrapped connection."
            .into(),
        (Step::B4 | Step::B5 | Step::B6, _, _) => "per-call overhead in keel-repo over one \
            prepared statement: pool checkout per call, validation, building the query and its \
            row struct. Closing it: reuse prepared statements (diesel's cache on every query \
            shape), check out once per unit of work, and profile the remainder."
            .into(),
        _ => "the gap is keel-repo's overhead over the same statements; profile the step \
            (e.g. perf record on keel-bench --steps <step>) to find it."
            .into(),
    }
}

/// The machine and the software the run was on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// `linux x86_64`, etc.
    pub platform: String,
    /// Cores the process may use.
    pub cores: usize,
    /// The SQLite library keel and the baseline share.
    pub sqlite: String,
    /// The PostgreSQL server's version, if it was used.
    pub postgres: Option<String>,
}

/// The sizes run.
#[derive(Debug, Clone, Serialize)]
pub struct Sizes {
    /// U.
    pub users: i32,
    /// P.
    pub posts_per_user: i32,
    /// C.
    pub comments_per_post: i32,
    /// U + U·P + U·P·C.
    pub rows: u64,
}

/// Everything one run of the bench found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// When the run ended (UTC, RFC 3339).
    pub finished_at: String,
    /// Where it ran.
    pub machine: Machine,
    /// The workload's sizes.
    pub workload: Sizes,
    /// `--repeat`.
    pub repeat: u32,
    /// One entry per step, backend and mode.
    pub results: Vec<StepResult>,
    /// Issue 6's targets, checked.
    pub targets: Vec<TargetCheck>,
    /// Every checksum that did not match; empty on success.
    pub checksum_failures: Vec<String>,
    /// How things were measured.
    pub notes: Vec<String>,
}

/// How the numbers are made, for the reports.
pub fn method_notes() -> Vec<String> {
    [
        "ratio = keel best seconds / hand-written best seconds (lower is better; 1.00 is parity).",
        "Read steps (B2-B6) run --repeat times, keel and baseline alternating; the best run counts. \
         Load steps (B1, B7) run once, each into freshly dropped and re-migrated tables.",
        "Statements: keel = db.statements() (transaction control not counted); baseline = its own \
         count of query/execute/COPY calls (prepares not counted; each prepared once per connection \
         on first use, as diesel's statement cache does).",
        "B1 keel: users().create_many, posts().create_many, comments().create_many, each in its \
         own transaction (on SQLite create_many cannot run inside db.transaction: \
         AlreadyInTransaction), so three commits where WORKLOAD.md has one.",
        "B1 baseline: PostgreSQL = COPY ... FROM STDIN (FORMAT BINARY), one per table, in one \
         transaction; SQLite = one multi-row INSERT per chunk of 32766 binds, prepared and cached, in \
         one BEGIN IMMEDIATE transaction. B7 is that COPY again, as the bulk-insert ceiling (no keel side).",
        "B2 baseline: 3 statements (users; posts by author_id = ANY($1) / IN (...); comments likewise), \
         grouped in memory into the same keel-models structs.",
        "B6: 64 tasks, task t takes ids[t::64], one pool checkout per lookup; keel = AsyncDatabase with \
         16 connections warmed before the step; baseline = 16 tokio-postgres clients behind a semaphore.",
        "SQLite: keel's pool puts the file in WAL mode with foreign_keys=ON; the baseline connection \
         uses the same pragmas on the same file.",
        "PostgreSQL sync mode's baseline is the postgres crate, async mode's is tokio-postgres; SQLite's \
         is rusqlite (no async driver) in both modes.",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

/// Seconds with about four significant digits.
pub fn seconds(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.1}")
    } else if value >= 10.0 {
        format!("{value:.2}")
    } else if value >= 1.0 {
        format!("{value:.3}")
    } else {
        format!("{value:.4}")
    }
}

/// A rate as `1.23M`, `45.6k` or `789`.
pub fn rate(value: f64) -> String {
    if value >= 1e6 {
        format!("{:.2}M", value / 1e6)
    } else if value >= 1e3 {
        format!("{:.1}k", value / 1e3)
    } else {
        format!("{value:.0}")
    }
}

/// The columns of the table, stdout and Markdown alike.
const COLUMNS: [&str; 11] = [
    "backend",
    "mode",
    "step",
    "keel s",
    "hand-written s",
    "ratio",
    "keel stmts",
    "hand stmts",
    "keel rows/s",
    "hand rows/s",
    "checksums",
];

fn row_cells(result: &StepResult) -> [String; 11] {
    let side = |side: &Option<Side>, f: &dyn Fn(&Side) -> String| {
        side.as_ref().map_or_else(|| "-".to_owned(), f)
    };
    [
        result.backend.name().to_owned(),
        result.mode.name().to_owned(),
        format!("{} {}", result.step.name(), result.title),
        side(&result.keel, &|s| seconds(s.seconds)),
        side(&result.baseline, &|s| seconds(s.seconds)),
        result
            .ratio
            .map_or_else(|| "-".to_owned(), |r| format!("{r:.2}")),
        side(&result.keel, &|s| s.statements.to_string()),
        side(&result.baseline, &|s| s.statements.to_string()),
        side(&result.keel, &|s| rate(s.rows_per_second)),
        side(&result.baseline, &|s| rate(s.rows_per_second)),
        if result.checksums_ok() {
            "ok".to_owned()
        } else {
            "MISMATCH".to_owned()
        },
    ]
}

/// The results as an aligned text table.
pub fn text_table(results: &[StepResult]) -> String {
    let rows: Vec<[String; 11]> = results.iter().map(row_cells).collect();
    let mut widths = COLUMNS.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &[&str]| {
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            // Text columns left-aligned, numbers right-aligned.
            if i < 3 || i == 10 {
                let _ = write!(out, "{cell:<width$}");
            } else {
                let _ = write!(out, "{cell:>width$}");
            }
            out.push_str(if i + 1 < cells.len() { "  " } else { "\n" });
        }
    };
    line(&mut out, &COLUMNS);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    line(
        &mut out,
        &rule.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    for row in &rows {
        line(
            &mut out,
            &row.iter().map(String::as_str).collect::<Vec<_>>(),
        );
    }
    out
}

/// The results as a Markdown table.
pub fn markdown_table(results: &[StepResult]) -> String {
    let mut out = format!("| {} |\n", COLUMNS.join(" | "));
    let align: Vec<&str> = (0..COLUMNS.len())
        .map(|i| if i < 3 || i == 10 { "---" } else { "---:" })
        .collect();
    let _ = writeln!(out, "| {} |", align.join(" | "));
    for result in results {
        let _ = writeln!(out, "| {} |", row_cells(result).join(" | "));
    }
    out
}

/// The Markdown summary: what ran where, the table, the chart, the targets.
pub fn markdown(report: &Report, chart_file: &str) -> String {
    let mut out = String::from("# keel-bench results\n\n");
    let w = &report.workload;
    let m = &report.machine;
    let _ = writeln!(
        out,
        "Workload: U={} users, P={} posts per user, C={} comments per post ({} rows); \
         --repeat {}; finished {}.\n",
        w.users, w.posts_per_user, w.comments_per_post, w.rows, report.repeat, report.finished_at
    );
    let _ = writeln!(
        out,
        "Machine: {}, {} cores; SQLite {}; PostgreSQL {}.\n",
        m.platform,
        m.cores,
        m.sqlite,
        m.postgres.as_deref().unwrap_or("not used")
    );
    out.push_str(&markdown_table(&report.results));
    let _ = writeln!(
        out,
        "\n![keel / hand-written time ratio per step]({chart_file})\n"
    );
    if report.checksum_failures.is_empty() {
        out.push_str("Every checksum matched WORKLOAD.md's formulas.\n\n");
    } else {
        out.push_str("## Checksum mismatches\n\n");
        for failure in &report.checksum_failures {
            let _ = writeln!(out, "- {failure}");
        }
        out.push('\n');
    }
    out.push_str("## Targets (issue 6)\n\n");
    let default_size = w.users == 10_000 && w.posts_per_user == 10 && w.comments_per_post == 2;
    if !default_size {
        out.push_str(
            "The targets are set for the default sizes (10,000 users); at these sizes they are \
             indicative only.\n\n",
        );
    }
    if report.targets.is_empty() {
        out.push_str("No step with a target ran.\n");
    } else {
        out.push_str(
            "| backend | mode | step | target | measured | met |\n|---|---|---|---|---|---|\n",
        );
        for t in &report.targets {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                t.backend.name(),
                t.mode.name(),
                t.step.name(),
                t.target,
                t.actual,
                if t.met { "yes" } else { "**no**" }
            );
        }
        let missed: Vec<&TargetCheck> = report.targets.iter().filter(|t| !t.met).collect();
        if !missed.is_empty() {
            out.push_str("\n### Why targets were missed\n\n");
            for t in missed {
                let _ = writeln!(
                    out,
                    "- **{} {} {}** ({}): {}",
                    t.backend.name(),
                    t.mode.name(),
                    t.step.name(),
                    t.actual,
                    t.why.as_deref().unwrap_or("")
                );
            }
        }
    }
    out.push_str("\n## How it is measured\n\n");
    for note in &report.notes {
        let _ = writeln!(out, "- {note}");
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn run(millis: u64, checksum: u64) -> Run<u64> {
        Run {
            elapsed: Duration::from_millis(millis),
            statements: 3,
            rows: 100,
            checksum,
            tables: None,
        }
    }

    #[test]
    fn the_best_run_counts_and_every_mismatch_is_reported() {
        let mut failures = Vec::new();
        let side = Side::from_runs(
            "x",
            vec![run(30, 7), run(10, 7), run(20, 8)],
            &7,
            "B2",
            &mut failures,
        )
        .expect("runs");
        assert!((side.seconds - 0.010).abs() < 1e-9);
        assert_eq!(side.runs.len(), 3);
        assert!((side.rows_per_second - 10_000.0).abs() < 1e-6);
        assert!(!side.checksum_ok);
        assert_eq!(side.checksum, "8");
        assert_eq!(failures, ["B2 x run 3: checksum 8 (expected 7)"]);
        assert!(Side::from_runs::<u64>("x", vec![], &7, "B2", &mut failures).is_none());
    }

    #[test]
    fn targets_follow_issue_6() {
        let mut failures = Vec::new();
        let mut side = |millis| Side::from_runs("x", vec![run(millis, 1)], &1, "", &mut failures);
        let results = vec![
            StepResult::new(
                Backend::Sqlite,
                Mode::Async,
                Step::B4,
                "1".into(),
                side(140),
                side(100),
            ),
            StepResult::new(
                Backend::Postgres,
                Mode::Async,
                Step::B4,
                "1".into(),
                side(140),
                side(100),
            ),
            StepResult::new(
                Backend::Postgres,
                Mode::Sync,
                Step::B2,
                "1".into(),
                side(110),
                side(100),
            ),
            StepResult::new(
                Backend::Postgres,
                Mode::Sync,
                Step::B3,
                "1".into(),
                side(500),
                side(100),
            ),
            StepResult::new(
                Backend::Postgres,
                Mode::Sync,
                Step::B7,
                "1".into(),
                None,
                side(100),
            ),
        ];
        let checks = check_targets(&results);
        let met: Vec<bool> = checks.iter().map(|c| c.met).collect();
        assert_eq!(met, [true, false, true]);
        assert!(checks[1].why.is_some());
        let table = text_table(&results);
        assert!(table.contains("B7 copy_reference"));
        assert!(markdown_table(&results).lines().count() == 7);
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(seconds(0.012_345), "0.0123");
        assert_eq!(seconds(12.345), "12.35");
        assert_eq!(rate(1_234_567.0), "1.23M");
        assert_eq!(rate(45_600.0), "45.6k");
        assert_eq!(rate(789.4), "789");
    }
}
