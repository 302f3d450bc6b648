//! The results: per step and side the best time, every run, statements,
//! rows/s and the checksum verdict; the keel/baseline ratio; the issue's
//! targets; and the stdout table, JSON and Markdown built from them.

use std::fmt::{Display, Write as _};

use serde::Serialize;

use crate::guard::ScopeTally;
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
    /// The workload's name for it.
    pub title: &'static str,
    /// The checksum every run must produce.
    pub expected: String,
    /// keel-repo's side; `None` for the reference step B7.
    pub keel: Option<Side>,
    /// The hand-written side.
    pub baseline: Option<Side>,
    /// keel's best seconds over the baseline's best seconds.
    pub ratio: Option<f64>,
    /// keel with the N+1 guard on (B2 and B4, unless `--guard false`).
    pub guard: Option<GuardResult>,
}

/// The N+1 guard's target (issue 5): under 3% over plain keel.
pub const GUARD_TARGET: f64 = 0.03;

/// keel's side again, with every unit of work in a `QueryScope` (the N+1
/// guard on), and what that cost over plain keel.
#[derive(Debug, Clone, Serialize)]
pub struct GuardResult {
    /// What one scope covers.
    pub unit_of_work: &'static str,
    /// keel with the guard on, over all runs (alternated with plain keel).
    pub side: Side,
    /// What the best guarded run's scopes recorded.
    pub scopes: ScopeTally,
    /// Plain keel's best seconds (the `keel` side's).
    pub plain_seconds: f64,
    /// The guard's best seconds over plain keel's best, minus 1.
    pub overhead: f64,
    /// The median, over rounds, of guarded / plain seconds of the same
    /// round, minus 1: a second estimate, to judge the noise.
    pub paired_median_overhead: Option<f64>,
    /// `overhead` is under [`GUARD_TARGET`].
    pub target_met: bool,
}

impl GuardResult {
    fn new(step: Step, side: Side, scopes: ScopeTally, plain: &Side) -> Self {
        let overhead = if plain.seconds > 0.0 {
            side.seconds / plain.seconds - 1.0
        } else {
            0.0
        };
        let mut paired: Vec<f64> = side
            .runs
            .iter()
            .zip(&plain.runs)
            .filter(|(_, p)| **p > 0.0)
            .map(|(g, p)| g / p - 1.0)
            .collect();
        paired.sort_by(f64::total_cmp);
        let paired_median_overhead = match paired.len() {
            0 => None,
            n if n % 2 == 1 => Some(paired[n / 2]),
            n => Some((paired[n / 2 - 1] + paired[n / 2]) / 2.0),
        };
        Self {
            unit_of_work: match step {
                Step::B4 => "one scope per lookup",
                _ => "one scope for the step",
            },
            side,
            scopes,
            plain_seconds: plain.seconds,
            overhead,
            paired_median_overhead,
            target_met: overhead < GUARD_TARGET,
        }
    }
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
            guard: None,
        }
    }

    /// The result with keel's guarded side added (compared with its plain
    /// keel side; without one, there is nothing to compare and it is dropped).
    #[must_use]
    pub fn with_guard(mut self, side: Side, scopes: ScopeTally) -> Self {
        if let Some(plain) = &self.keel {
            self.guard = Some(GuardResult::new(self.step, side, scopes, plain));
        }
        self
    }

    /// Every run of both sides got the expected checksum.
    pub fn checksums_ok(&self) -> bool {
        [&self.keel, &self.baseline]
            .into_iter()
            .flatten()
            .chain(self.guard.as_ref().map(|g| &g.side))
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
        (Step::B1, Backend::Postgres, _) if keel.statements > 3 => format!(
            "keel sent {} statements: multi-row INSERTs, one per chunk of 65535 binds, against \
             3 binary COPYs. keel-repo loads with COPY on a sync connection: sync mode, async \
             insert_many on the pool, and AsyncDatabase::run_blocking. An async transaction's \
             connection has no COPY (diesel-async has none). Closing it: load through \
             run_blocking, as this bench does.",
            keel.statements
        ),
        (Step::B1, Backend::Postgres, _) => format!(
            "keel loads through COPY like the baseline ({} statements), so what is left is \
             outside the statements: how each row is encoded for COPY (diesel's copy_from goes \
             through the Insertable impls). Loads are the noisiest figures here (disk writes); \
             rerun with --steps B1 --repeat 5 before reading much into one.",
            keel.statements
        ),
        (Step::B1, Backend::Sqlite, _) => format!(
            "keel sends the same multi-row INSERTs ({} statements), and each full chunk's \
             statement is prepared once and then cached, as the baseline does. perf puts keel's \
             CPU for the load within about 5% of the baseline's (diesel's bind path). The rest \
             is disk writes, which vary by up to 40% between loads. Rerun with --steps B1 \
             --repeat 5 before reading much into one run.",
            keel.statements
        ),
        (Step::B6, _, _) if keel.statements > 10_000 => format!(
            "keel sent {} statements for 10000 lookups: something runs per checkout (a health \
             check?). Closing it: no test query on checkout.",
            keel.statements
        ),
        (Step::B4 | Step::B5, Backend::Sqlite, _) => format!(
            "same statements, each prepared once. In {} mode (perf) keel's lookup costs about \
             0.8 us more than the hand-written one: diesel's row decoding (build_from_row), its \
             statement-cache key (a SipHash per statement), keel's input validation. Both sides \
             spend about 40% of the step in SQLite's WAL read lock (two fcntl calls per \
             autocommit statement). In async mode each call runs in place (block_in_place), so \
             no thread hop is left. Also, SQLite's short read steps move between runs: within \
             one full run the hand-written side has run B5 twice as fast in async mode as in \
             sync mode, with the same code. Closing the rest: several lookups in one read \
             transaction (one WAL lock), or a cheaper statement-cache key in diesel.",
            mode.name()
        ),
        (Step::B2, Backend::Sqlite, _) => "the same 3 statements, but keel prepares the two \
            IN-list statements (1000 and 10000 placeholders) afresh on every call. diesel's \
            statement cache skips queries whose placeholder count varies: about 5% of the step \
            (perf, sync mode). Reading timestamps now costs both sides the same. Closing it: \
            bind an id list as one value (IN (SELECT value FROM json_each(?)) or carray), so the \
            statements can be cached."
            .into(),
        (Step::B4 | Step::B5 | Step::B6, Backend::Postgres, Mode::Async) => "keel's async \
            PostgreSQL path (diesel-async over tokio-postgres, a deadpool checkout per call) \
            spends its extra time in scheduling, not in PostgreSQL: perf shows it in \
            diesel-async's drive_connection / drive_future and tokio's park/unpark, i.e. more \
            wake-ups per statement than the tokio-postgres baseline. B6 moves between 1.05 and \
            1.31 across runs on this machine. Not yet pinned to one cause; next: count wake-ups \
            per lookup with and without the pool checkout."
            .into(),
        (Step::B4 | Step::B5 | Step::B6, _, _) => "per-call overhead in keel-repo over one \
            prepared statement: pool checkout per call, building the query and its statement \
            cache key, decoding the row struct. Closing it: check out once per unit of work and \
            profile the remainder (perf record on keel-bench --steps <step>)."
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
    /// Rounds of B2 and B4 while the N+1 guard was measured (`None`: it was
    /// not, `--guard false`).
    pub guard_rounds: Option<u32>,
    /// One entry per step, backend and mode.
    pub results: Vec<StepResult>,
    /// H1 and H2 per backend: keel serve's router beside a hand-written one.
    pub http: Vec<crate::http::HttpResult>,
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
        "Steps B1-B6 run --repeat times, keel and baseline alternating; the best run counts. \
         Each B1 run loads freshly dropped and re-migrated tables (SQLite: VACUUMed, WAL \
         truncated), as does B7, which runs once. The workload loads once; one load here varies \
         by up to 40%, so B1 repeats too.",
        "Statements: keel = db.statements() (transaction control not counted); baseline = its own \
         count of query/execute/COPY calls (prepares not counted; each prepared once per connection \
         on first use, as diesel's statement cache does).",
        "B1 keel: users().insert_many, posts().insert_many, comments().insert_many inside one \
         db.transaction, one commit as in the workload; in async mode that sync transaction runs \
         on a blocking thread through db.run_blocking. insert_many is keel's load path (no \
         RETURNING): COPY on PostgreSQL, multi-row INSERTs on SQLite (each full chunk's \
         statement prepared once).",
        "B1 baseline: PostgreSQL = COPY ... FROM STDIN (FORMAT BINARY), one per table, in one \
         transaction; SQLite = one multi-row INSERT per chunk of 32766 binds, prepared and cached, in \
         one BEGIN IMMEDIATE transaction. B7 is that COPY again, as the bulk-insert ceiling (no keel side).",
        "B2 baseline: 3 statements (users; posts by author_id = ANY($1) / IN (...); comments likewise), \
         grouped in memory into the same keel-models structs.",
        "B6: 64 tasks, task t takes ids[t::64], one pool checkout per lookup; keel = AsyncDatabase with \
         16 connections warmed before the step; baseline = 16 tokio-postgres clients behind a semaphore.",
        "N+1 guard (B2, B4): keel's step again with each unit of work in a strict QueryScope, as \
         keel serve runs each request: B2 = the whole step in one scope (3 statements), B4 = one \
         scope per lookup (10,000 scopes of 1 statement; one scope around all lookups would be \
         the N+1 the guard exists to flag). Plain keel, keel with the guard and the baseline \
         alternate for --guard-repeat rounds (default 7, or --repeat when only that is given; \
         never fewer than --repeat), plain and guarded swapping order every other round; overhead = guarded best / plain best - 1. Each guarded run must \
         record exactly the statements keel's counter saw, with no repeated shape.",
        "SQLite: keel's pool puts the file in WAL mode with foreign_keys=ON; the baseline connection \
         uses the same pragmas on the same file.",
        "PostgreSQL: every connection is plaintext over TCP to 127.0.0.1, keel's (the URL carries \
         sslmode=disable; libpq's default, prefer, would encrypt keel's sync mode whenever the \
         server offers TLS) and the baseline's (NoTls) alike.",
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
const COLUMNS: [&str; 13] = [
    "backend",
    "mode",
    "step",
    "keel s",
    "hand-written s",
    "ratio",
    "keel+guard s",
    "guard +%",
    "keel stmts",
    "hand stmts",
    "keel rows/s",
    "hand rows/s",
    "checksums",
];

/// Whether column `i` holds text (left-aligned) rather than a number.
fn is_text_column(i: usize) -> bool {
    i < 3 || i + 1 == COLUMNS.len()
}

/// An overhead as a signed percentage: `+1.2%`, `-0.4%`.
pub fn percent(value: f64) -> String {
    format!("{:+.1}%", value * 100.0)
}

fn row_cells(result: &StepResult) -> [String; 13] {
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
        result
            .guard
            .as_ref()
            .map_or_else(|| "-".to_owned(), |g| seconds(g.side.seconds)),
        result
            .guard
            .as_ref()
            .map_or_else(|| "-".to_owned(), |g| percent(g.overhead)),
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
    let rows: Vec<[String; 13]> = results.iter().map(row_cells).collect();
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
            if is_text_column(i) {
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
        .map(|i| if is_text_column(i) { "---" } else { "---:" })
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
    let rounds = report.guard_rounds.map_or_else(String::new, |n| {
        format!(" (B2 and B4: {n}, with the N+1 guard)")
    });
    let _ = writeln!(
        out,
        "Workload: U={} users, P={} posts per user, C={} comments per post ({} rows); \
         --repeat {}{rounds}; finished {}.\n",
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
    out.push_str(&http_markdown(&report.http));
    out.push('\n');
    if report.checksum_failures.is_empty() {
        out.push_str("Every checksum matched the workload's formulas (docs/workload.md).\n\n");
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
    out.push_str(&guard_markdown(&report.results));
    out.push_str("\n## How it is measured\n\n");
    for note in &report.notes {
        let _ = writeln!(out, "- {note}");
    }
    out
}

/// The results that measured the N+1 guard, with their guard side.
fn guarded(results: &[StepResult]) -> impl Iterator<Item = (&StepResult, &GuardResult)> {
    results
        .iter()
        .filter_map(|r| r.guard.as_ref().map(|g| (r, g)))
}

/// The N+1 guard's overhead as a short text table (stdout), or nothing when
/// it was not measured.
pub fn guard_text(results: &[StepResult]) -> String {
    let mut out = String::new();
    for (r, g) in guarded(results) {
        if out.is_empty() {
            let _ = writeln!(
                out,
                "\nN+1 guard overhead (issue 5: under {:.0}%):",
                GUARD_TARGET * 100.0
            );
        }
        let _ = writeln!(
            out,
            "  {:<8} {:<5} {} {:<22} keel {:>7} s  keel+guard {:>7} s  {:>7} (paired median {:>7})  {}",
            r.backend.name(),
            r.mode.name(),
            r.step.name(),
            g.unit_of_work,
            seconds(g.plain_seconds),
            seconds(g.side.seconds),
            percent(g.overhead),
            g.paired_median_overhead
                .map_or_else(|| "-".to_owned(), percent),
            if g.target_met { "met" } else { "MISSED" }
        );
    }
    out
}

/// The Markdown section on the N+1 guard's overhead.
fn guard_markdown(results: &[StepResult]) -> String {
    let mut rows = String::new();
    let mut missed = String::new();
    for (r, g) in guarded(results) {
        let _ = writeln!(
            rows,
            "| {} | {} | {} {} | {} ({} {}, {} statements recorded) | {} | {} | {} | {} | {} |",
            r.backend.name(),
            r.mode.name(),
            r.step.name(),
            r.title,
            g.unit_of_work,
            g.scopes.scopes,
            if g.scopes.scopes == 1 {
                "scope"
            } else {
                "scopes"
            },
            g.scopes.statements,
            seconds(g.plain_seconds),
            seconds(g.side.seconds),
            percent(g.overhead),
            g.paired_median_overhead
                .map_or_else(|| "-".to_owned(), percent),
            if g.target_met { "met" } else { "**missed**" }
        );
        if !g.target_met {
            let _ = writeln!(
                missed,
                "- **{} {} {}** ({}): {}",
                r.backend.name(),
                r.mode.name(),
                r.step.name(),
                percent(g.overhead),
                guard_miss_reason(r.step, g)
            );
        }
    }
    if rows.is_empty() {
        return String::new();
    }
    let mut out = String::from("\n## N+1 guard overhead (issue 5)\n\n");
    let _ = writeln!(
        out,
        "keel's B2 and B4 again with the N+1 guard on: each unit of work runs in a strict \
         `QueryScope`, as `keel serve` runs each request, so every statement is also recorded \
         (SQL text formatted, shape grouped) and checked. Plain keel and keel with the guard \
         alternate in the same process; best of the same number of runs each. Target: overhead \
         under {:.0}%. The paired median (guarded / plain run of the same round) is a second \
         estimate that shows how much of a figure is noise.\n",
        GUARD_TARGET * 100.0
    );
    out.push_str(
        "| backend | mode | step | unit of work | keel s | keel + guard s | overhead | paired median | under 3% |\n\
         |---|---|---|---|---:|---:|---:|---:|---|\n",
    );
    out.push_str(&rows);
    if !missed.is_empty() {
        out.push_str("\n### Why the guard target was missed\n\n");
        out.push_str(&missed);
    }
    out
}

/// Why the guard cost more than the target, and what would close it.
fn guard_miss_reason(step: Step, guard: &GuardResult) -> String {
    if guard
        .paired_median_overhead
        .is_some_and(|median| median < GUARD_TARGET)
    {
        return format!(
            "best-of-N says {}, but the median of same-round pairs says {}: the difference is \
             within this machine's run-to-run noise. A quieter machine or a higher \
             --guard-repeat would settle it.",
            percent(guard.overhead),
            guard
                .paired_median_overhead
                .map_or_else(String::new, percent)
        );
    }
    match step {
        Step::B4 => format!(
            "each lookup here is a whole unit of work of one statement ({:.1} us plain), so the \
             guard's fixed cost per scope and per statement is not amortised: a scope is a \
             shared record (name, lock, shape map) made current for the call, and each \
             statement is formatted with its binds into a String (diesel renders the query's \
             SQL a second time to do it), its shape copied into the map when first seen and its \
             text kept in the scope's log. Closing it (in keel-repo): render a statement's SQL \
             once for both diesel and the guard (diesel's instrumentation hands out only a \
             Display of the query), and format binds only for a failure message.",
            guard.plain_seconds * 1e6 / guard.scopes.scopes.max(1) as f64
        ),
        _ => "the step's few statements carry long bind lists (the IN lists of 1000 and 10000 \
              ids), which the guard formats into the statement text, copies into the shape key \
              and keeps in the scope's log. Closing it (in keel-repo): format the SQL without \
              binds for the shape and keep bind values out of the log, or cap their length."
            .into(),
    }
}

/// The columns of the HTTP table, and each one's width in the text table.
const HTTP_COLUMNS: [(&str, usize); 12] = [
    ("backend", 9),
    ("step", 44),
    ("conns", 5),
    ("keel req/s", 11),
    ("keel p50", 9),
    ("keel p99", 9),
    ("keel cpu/req", 12),
    ("hand req/s", 11),
    ("hand p50", 9),
    ("hand p99", 9),
    ("hand cpu/req", 12),
    ("ratio", 6),
];

/// One HTTP result's cells, in [`HTTP_COLUMNS`] order.
fn http_cells(r: &crate::http::HttpResult) -> [String; 12] {
    [
        r.backend.to_owned(),
        r.step.label().to_owned(),
        r.connections.to_string(),
        format!("{:.0}", r.keel.requests_per_second),
        format!("{:.2}ms", r.keel.p50_ms),
        format!("{:.2}ms", r.keel.p99_ms),
        format!("{:.1}µs", r.keel.cpu_us_per_request),
        format!("{:.0}", r.baseline.requests_per_second),
        format!("{:.2}ms", r.baseline.p50_ms),
        format!("{:.2}ms", r.baseline.p99_ms),
        format!("{:.1}µs", r.baseline.cpu_us_per_request),
        format!("{:.2}", r.ratio),
    ]
}

/// H1 and H2 side by side: requests per second, p50 and p99, and keel's
/// requests per second over the hand-written router's.
pub fn http_text(results: &[crate::http::HttpResult]) -> String {
    if results.is_empty() {
        return String::new();
    }
    // The first two columns are text, left-aligned; the rest numbers.
    let line = |cells: [&str; 12]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(HTTP_COLUMNS)
            .enumerate()
            .map(|(i, (cell, (_, width)))| {
                if i < 2 {
                    format!("{cell:<width$}")
                } else {
                    format!("{cell:>width$}")
                }
            })
            .collect();
        format!("{}\n", padded.join(" "))
    };
    let mut out = String::from(
        "\nHTTP (keel serve's router vs a hand-written axum router; ratio = keel req/s / hand-written req/s, higher is better)\n",
    );
    out.push_str(&line(HTTP_COLUMNS.map(|(name, _)| name)));
    for r in results {
        let cells = http_cells(r);
        out.push_str(&line(cells.each_ref().map(String::as_str)));
    }
    out
}

/// [`http_text`] as a Markdown table.
pub fn http_markdown(results: &[crate::http::HttpResult]) -> String {
    if results.is_empty() {
        return String::new();
    }
    let row = |cells: Vec<&str>| format!("| {} |\n", cells.join(" | "));
    let mut out = String::from(
        "\n## HTTP: keel serve's router vs a hand-written axum router\n\n\
         ratio = keel requests/s ÷ hand-written requests/s (higher is better). \
         Both over loopback TCP, the same keep-alive connections, the same ids, \
         the same response bytes (checked on a sample before timing).\n\n",
    );
    out.push_str(&row(HTTP_COLUMNS.iter().map(|(name, _)| *name).collect()));
    out.push_str(&row(vec!["---"; HTTP_COLUMNS.len()]));
    for r in results {
        let cells = http_cells(r);
        out.push_str(&row(cells.iter().map(String::as_str).collect()));
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
    fn the_guard_overhead_is_best_over_best_with_a_paired_median() {
        let mut failures = Vec::new();
        let runs = |ms: &[u64]| ms.iter().map(|&m| run(m, 1)).collect::<Vec<_>>();
        let plain = Side::from_runs("keel", runs(&[100, 104, 110]), &1, "", &mut failures);
        let guard =
            Side::from_runs("guard", runs(&[102, 103, 130]), &1, "", &mut failures).expect("runs");
        let tally = ScopeTally {
            scopes: 1,
            statements: 3,
            repeated: 0,
        };
        let result = StepResult::new(
            Backend::Sqlite,
            Mode::Sync,
            Step::B2,
            "1".into(),
            plain,
            None,
        )
        .with_guard(guard, tally);
        let g = result.guard.as_ref().expect("guard kept");
        assert!((g.overhead - 0.02).abs() < 1e-9);
        // Pairs: +2%, -1%, +18.2%; their median is +2%.
        let median = g.paired_median_overhead.expect("pairs");
        assert!((median - 0.02).abs() < 1e-9);
        assert!(g.target_met);
        assert_eq!(g.unit_of_work, "one scope for the step");
        let table = text_table(std::slice::from_ref(&result));
        assert!(table.contains("+2.0%"), "{table}");
        let section = guard_markdown(std::slice::from_ref(&result));
        assert!(section.contains("## N+1 guard overhead"));
        assert!(section.contains("| met |"), "{section}");
        assert!(guard_text(std::slice::from_ref(&result)).contains("met"));
        // Without the guard measured, no section at all.
        assert!(guard_markdown(&[]).is_empty());
        assert!(guard_text(&[]).is_empty());
    }

    #[test]
    fn a_missed_guard_target_says_why() {
        let mut failures = Vec::new();
        let runs = |ms: &[u64]| ms.iter().map(|&m| run(m, 1)).collect::<Vec<_>>();
        let plain = Side::from_runs("keel", runs(&[100, 100]), &1, "", &mut failures);
        let guard =
            Side::from_runs("guard", runs(&[110, 112]), &1, "", &mut failures).expect("runs");
        let tally = ScopeTally {
            scopes: 10_000,
            statements: 10_000,
            repeated: 0,
        };
        let result = StepResult::new(
            Backend::Postgres,
            Mode::Async,
            Step::B4,
            "1".into(),
            plain,
            None,
        )
        .with_guard(guard, tally);
        let g = result.guard.as_ref().expect("guard kept");
        assert!(!g.target_met);
        let section = guard_markdown(std::slice::from_ref(&result));
        assert!(section.contains("**missed**"));
        assert!(section.contains("Why the guard target was missed"));
        assert!(section.contains("one scope per lookup"));
        // Noise, not cost, when the paired median is under the target.
        let noisy = GuardResult {
            paired_median_overhead: Some(0.01),
            ..g.clone()
        };
        assert!(guard_miss_reason(Step::B4, &noisy).contains("noise"));
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
