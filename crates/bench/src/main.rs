//! keel-bench: the workload's steps B1-B7 (docs/workload.md) through keel-repo
//! (sync and async) beside a hand-written baseline on the plain drivers, on
//! SQLite and PostgreSQL, with every checksum verified against the workload's
//! formulas.
//!
//! Exit status: 0 when every checksum matched, 1 on any mismatch, 2 when the
//! bench could not run (e.g. no PostgreSQL server). Reports: a table on
//! stdout, and `results.json`, `summary.md` and `ratios.svg` in `--out-dir`.

mod baseline;
mod chart;
mod cli;
mod database;
mod guard;
mod http;
mod keel_async;
mod keel_sync;
mod report;
mod steps;

use std::cell::RefCell;
use std::fmt::Display;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use keel_migrations::DatabaseUrl;
use keel_workload::{
    GraphChecksum, JOIN_QUERY_COUNT, JoinChecksum, LOOKUP_COUNT, LoadChecksum, LookupChecksum,
    Workload,
};
use tokio::runtime::Handle;

use crate::baseline::pg_async::PgAsyncBaseline;
use crate::baseline::pg_sync::PgSyncBaseline;
use crate::baseline::sqlite::SqliteBaseline;
use crate::cli::Args;
use crate::database::{Admin, BenchDatabase};
use crate::guard::ScopeTally;
use crate::keel_async::KeelAsync;
use crate::keel_sync::KeelSync;
use crate::report::{Machine, Report, Sizes, StepResult};
use crate::steps::{Backend, Contender, Guarded, LoadRows, Mode, Run, Step};

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(report) if report.checksum_failures.is_empty() => ExitCode::SUCCESS,
        Ok(report) => {
            for failure in &report.checksum_failures {
                eprintln!("keel-bench: checksum mismatch: {failure}");
            }
            ExitCode::from(1)
        }
        Err(error) => {
            eprintln!("keel-bench: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// The inputs every contender gets, built before anything is timed.
struct Inputs {
    workload: Workload,
    rows: LoadRows,
    /// The lookup sequence: B4 and B6 take all of it, B5 its prefix.
    lookup_ids: Vec<i32>,
    expected_load: LoadChecksum,
    expected_graph: GraphChecksum,
    expected_lookups: LookupChecksum,
    expected_join: JoinChecksum,
}

/// The run in progress: what has been measured and what went wrong.
struct Bench<'a> {
    args: &'a Args,
    inputs: Inputs,
    runtime: Handle,
    results: Vec<StepResult>,
    http: Vec<http::HttpResult>,
    failures: Vec<String>,
    postgres_version: Option<String>,
}

fn run(args: &Args) -> anyhow::Result<Report> {
    let workload = Workload::new(args.users, args.posts_per_user, args.comments_per_post)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    eprintln!(
        "keel-bench: building {} rows and the lookup sequence",
        workload.row_count()
    );
    let inputs = Inputs {
        workload,
        rows: LoadRows::new(&workload),
        lookup_ids: workload.lookup_ids(LOOKUP_COUNT),
        expected_load: workload.expected_load(),
        expected_graph: workload.expected_graph(),
        expected_lookups: workload.expected_lookups(),
        expected_join: workload.expected_join(),
    };
    let mut bench = Bench {
        args,
        inputs,
        runtime: runtime.handle().clone(),
        results: Vec::new(),
        http: Vec::new(),
        failures: Vec::new(),
        postgres_version: None,
    };
    http::install_log_sink(args.http_access_log);
    for backend in args.backends() {
        bench.run_backend(backend)?;
    }
    let report = bench.report();
    print!("{}", report::text_table(&report.results));
    print!("{}", report::guard_text(&report.results));
    print!("{}", report::http_text(&report.http));
    write_outputs(args, &report)?;
    Ok(report)
}

impl Bench<'_> {
    fn run_backend(&mut self, backend: Backend) -> anyhow::Result<()> {
        let steps: Vec<(Mode, Vec<Step>)> = self
            .args
            .modes()
            .into_iter()
            .map(|mode| {
                let steps = self
                    .args
                    .selected_steps()
                    .into_iter()
                    .filter(|s| s.applies_to(backend, mode))
                    .collect();
                (mode, steps)
            })
            .filter(|(_, steps): &(Mode, Vec<Step>)| !steps.is_empty())
            .collect();
        if steps.is_empty() {
            return Ok(());
        }
        let database =
            BenchDatabase::create(backend, &self.args.pg_url, &self.args.out_dir.join("work"))?;
        eprintln!(
            "keel-bench: {} database {}",
            backend.name(),
            database.describe()
        );
        let mut admin = Admin::connect(&database)?;
        if backend == Backend::Postgres {
            self.postgres_version = Some(admin.server_version()?);
        }
        // keel's pools and the baselines connect to migrated tables.
        admin.reset_tables()?;
        for (mode, steps) in steps {
            let url = database.url();
            let (mut keel, keel_driver): (Box<dyn Contender>, &'static str) = match mode {
                Mode::Sync => (Box::new(KeelSync::connect(url.clone())?), "keel-repo sync"),
                Mode::Async => (
                    Box::new(KeelAsync::connect(self.runtime.clone(), url.clone())?),
                    "keel-repo async",
                ),
            };
            let (mut baseline, baseline_driver): (Box<dyn Contender>, &'static str) =
                match (&url, mode) {
                    (DatabaseUrl::Sqlite(path), _) => {
                        (Box::new(SqliteBaseline::connect(path)?), "rusqlite")
                    }
                    (DatabaseUrl::Postgres(raw), Mode::Sync) => (
                        Box::new(PgSyncBaseline::connect(raw.as_connection_str())?),
                        "postgres",
                    ),
                    (DatabaseUrl::Postgres(raw), Mode::Async) => (
                        Box::new(PgAsyncBaseline::connect(
                            self.runtime.clone(),
                            raw.as_connection_str(),
                        )?),
                        "tokio-postgres",
                    ),
                };
            let mut mode_run = ModeRun {
                bench: self,
                backend,
                mode,
                admin: &mut admin,
                keel: keel.as_mut(),
                keel_driver,
                baseline: baseline.as_mut(),
                baseline_driver,
            };
            mode_run.run(&steps)?;
        }
        if self.args.http_requests > 0 {
            let load = http::HttpLoad {
                requests: self.args.http_requests,
                connections: usize::from(self.args.http_connections),
                rounds: usize::from(self.args.http_rounds),
                steps: self.args.http_steps.clone(),
                profile: self.args.http_profile,
            };
            eprintln!(
                "keel-bench: {} {:?} (HTTP, {} connections)",
                backend.name(),
                load.steps,
                load.connections
            );
            let results =
                self.runtime
                    .block_on(http::run(&database.url(), &self.inputs.lookup_ids, load))?;
            self.http.extend(results);
        }
        drop(admin);
        drop(database);
        // The SQLite files' parent, once empty, goes too.
        let _ = std::fs::remove_dir(self.args.out_dir.join("work"));
        Ok(())
    }

    fn report(self) -> Report {
        let workload = self.inputs.workload;
        Report {
            finished_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            machine: Machine {
                platform: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
                cores: std::thread::available_parallelism().map_or(1, usize::from),
                sqlite: rusqlite::version().to_owned(),
                postgres: self.postgres_version,
            },
            workload: Sizes {
                users: workload.user_count(),
                posts_per_user: workload.posts_per_user(),
                comments_per_post: workload.comments_per_post(),
                rows: workload.row_count(),
            },
            repeat: self.args.repeat(),
            guard_rounds: self.args.guard.then(|| self.args.guard_rounds()),
            targets: report::check_targets(&self.results),
            results: self.results,
            http: self.http,
            checksum_failures: self.failures,
            notes: report::method_notes(),
        }
    }
}

/// One backend in one mode: keel-repo and its baseline, step by step.
struct ModeRun<'b, 'a, 'c> {
    bench: &'b mut Bench<'a>,
    backend: Backend,
    mode: Mode,
    admin: &'c mut Admin,
    keel: &'c mut dyn Contender,
    keel_driver: &'static str,
    baseline: &'c mut dyn Contender,
    baseline_driver: &'static str,
}

impl ModeRun<'_, '_, '_> {
    fn label(&self, step: Step) -> String {
        format!(
            "{} {} {}",
            self.backend.name(),
            self.mode.name(),
            step.name()
        )
    }

    fn run(&mut self, steps: &[Step]) -> anyhow::Result<()> {
        let reads: Vec<Step> = steps.iter().copied().filter(|s| !s.is_load()).collect();
        if steps.contains(&Step::B1) {
            // The workload loads once per side. One load on this kind of VM
            // varies by up to ±40% (disk writes), and the first load of a
            // backend and mode also pays for growing the heap and the files.
            // So loads alternate sides `--repeat` times too, and the best counts.
            let (mut keel, mut baseline) = (Vec::new(), Vec::new());
            for _ in 0..self.bench.args.repeat() {
                keel.push(self.timed_load(Contestant::Keel)?);
                baseline.push(self.timed_load(Contestant::Baseline)?);
            }
            self.record(
                Step::B1,
                self.bench.inputs.expected_load,
                Some(keel),
                Some(baseline),
            );
        } else if !reads.is_empty() {
            // The read steps need data: the baseline loads it, untimed.
            let load = self.timed_load(Contestant::Baseline)?;
            if load.checksum != self.bench.inputs.expected_load {
                self.bench.failures.push(format!(
                    "{} untimed load: checksum {} (expected {})",
                    self.label(Step::B1),
                    load.checksum,
                    self.bench.inputs.expected_load
                ));
            }
        }
        if !reads.is_empty() {
            self.admin.analyze()?;
            if self.backend == Backend::Sqlite {
                self.keel.reopen()?;
                self.baseline.reopen()?;
            }
        }
        let repeat = self.bench.args.repeat();
        let lookup_ids = self.bench.inputs.lookup_ids.clone();
        let join_ids = &lookup_ids[..JOIN_QUERY_COUNT.min(lookup_ids.len())];
        for step in reads {
            let label = self.label(step);
            let (keel, baseline) = (&mut *self.keel, &mut *self.baseline);
            match step {
                Step::B2 if self.bench.args.guard => {
                    let keel = RefCell::new(keel);
                    let mut tallies = Vec::new();
                    let (k, g, b) = alternate_guarded(
                        &label,
                        self.bench.args.rounds(step),
                        || keel.borrow_mut().eager_load().map(Some),
                        || keep_tally(keel.borrow_mut().eager_load_guarded(), &mut tallies),
                        || baseline.eager_load().map(Some),
                    )?;
                    let guard = g.map(|runs| (runs, tallies));
                    self.record_with_guard(step, self.bench.inputs.expected_graph, k, guard, b);
                }
                Step::B2 => {
                    let (k, b) = alternate(
                        &label,
                        repeat,
                        || keel.eager_load().map(Some),
                        || baseline.eager_load().map(Some),
                    )?;
                    self.record(step, self.bench.inputs.expected_graph, k, b);
                }
                Step::B3 => {
                    let (k, b) = alternate(
                        &label,
                        repeat,
                        || keel.n_plus_one().map(Some),
                        || baseline.n_plus_one().map(Some),
                    )?;
                    self.record(step, self.bench.inputs.expected_graph, k, b);
                }
                Step::B4 if self.bench.args.guard => {
                    let keel = RefCell::new(keel);
                    let mut tallies = Vec::new();
                    let (k, g, b) = alternate_guarded(
                        &label,
                        self.bench.args.rounds(step),
                        || keel.borrow_mut().point_lookups(&lookup_ids).map(Some),
                        || {
                            let guarded = keel.borrow_mut().point_lookups_guarded(&lookup_ids);
                            keep_tally(guarded, &mut tallies)
                        },
                        || baseline.point_lookups(&lookup_ids).map(Some),
                    )?;
                    let guard = g.map(|runs| (runs, tallies));
                    self.record_with_guard(step, self.bench.inputs.expected_lookups, k, guard, b);
                }
                Step::B4 => {
                    let (k, b) = alternate(
                        &label,
                        repeat,
                        || keel.point_lookups(&lookup_ids).map(Some),
                        || baseline.point_lookups(&lookup_ids).map(Some),
                    )?;
                    self.record(step, self.bench.inputs.expected_lookups, k, b);
                }
                Step::B5 => {
                    let (k, b) = alternate(
                        &label,
                        repeat,
                        || keel.join_filter(join_ids).map(Some),
                        || baseline.join_filter(join_ids).map(Some),
                    )?;
                    self.record(step, self.bench.inputs.expected_join, k, b);
                }
                Step::B6 => {
                    let (k, b) = alternate(
                        &label,
                        repeat,
                        || keel.concurrent_lookups(&lookup_ids),
                        || baseline.concurrent_lookups(&lookup_ids),
                    )?;
                    self.record(step, self.bench.inputs.expected_lookups, k, b);
                }
                Step::B1 | Step::B7 => {}
            }
        }
        if steps.contains(&Step::B7) {
            let copy = self.timed_load(Contestant::Baseline)?;
            self.record(
                Step::B7,
                self.bench.inputs.expected_load,
                None,
                Some(vec![copy]),
            );
        }
        Ok(())
    }

    /// Fresh tables, one timed load by `side`, then the load check (untimed).
    fn timed_load(&mut self, side: Contestant) -> anyhow::Result<Run<LoadChecksum>> {
        self.admin.reset_tables()?;
        let (contender, driver) = match side {
            Contestant::Keel => (&mut *self.keel, self.keel_driver),
            Contestant::Baseline => (&mut *self.baseline, self.baseline_driver),
        };
        let label = format!("{} {} load", self.backend.name(), self.mode.name());
        let run = contender
            .load(&self.bench.inputs.rows)
            .with_context(|| format!("{label} by {driver}"))?;
        let checksum = self.admin.load_checksum(&self.bench.inputs.workload)?;
        eprintln!(
            "  {label} {driver}: {} s, {} statements, {checksum}",
            report::seconds(run.elapsed.as_secs_f64()),
            run.statements
        );
        Ok(Run {
            elapsed: run.elapsed,
            statements: run.statements,
            rows: run.rows,
            checksum,
            tables: run.tables,
        })
    }

    fn record<T: PartialEq + Display>(
        &mut self,
        step: Step,
        expected: T,
        keel: Option<Vec<Run<T>>>,
        baseline: Option<Vec<Run<T>>>,
    ) {
        self.record_with_guard(step, expected, keel, None, baseline);
    }

    /// Records a step; `guard` is keel's runs with the N+1 guard on and what
    /// each run's scopes recorded, when that was measured.
    fn record_with_guard<T: PartialEq + Display>(
        &mut self,
        step: Step,
        expected: T,
        keel: Option<Vec<Run<T>>>,
        guard: Option<(Vec<Run<T>>, Vec<ScopeTally>)>,
        baseline: Option<Vec<Run<T>>>,
    ) {
        let label = self.label(step);
        let guard_driver = match self.mode {
            Mode::Sync => "keel-repo sync + N+1 guard",
            Mode::Async => "keel-repo async + N+1 guard",
        };
        let failures = &mut self.bench.failures;
        let keel = keel.and_then(|runs| {
            report::Side::from_runs(self.keel_driver, runs, &expected, &label, failures)
        });
        let guard = guard.and_then(|(runs, tallies)| {
            check_scopes(&label, guard_driver, &runs, &tallies, failures);
            let best = (0..runs.len()).min_by_key(|&i| runs[i].elapsed)?;
            let tally = *tallies.get(best)?;
            let side = report::Side::from_runs(guard_driver, runs, &expected, &label, failures)?;
            Some((side, tally))
        });
        let baseline = baseline.and_then(|runs| {
            report::Side::from_runs(self.baseline_driver, runs, &expected, &label, failures)
        });
        let mut result = StepResult::new(
            self.backend,
            self.mode,
            step,
            expected.to_string(),
            keel,
            baseline,
        );
        if let Some((side, tally)) = guard {
            result = result.with_guard(side, tally);
        }
        self.bench.results.push(result);
    }
}

/// Which contender of a mode.
#[derive(Clone, Copy)]
enum Contestant {
    Keel,
    Baseline,
}

type Runs<T> = Option<Vec<Run<T>>>;

/// One side's run of a step, for [`alternate_sides`].
type Attempt<'f, T> = &'f mut dyn FnMut() -> anyhow::Result<Option<Run<T>>>;

/// Runs keel and the baseline `repeat` times each, alternating, printing
/// each run. A side that does not run the step (`None`) gives `None`.
fn alternate<T: Display>(
    label: &str,
    repeat: u32,
    mut keel: impl FnMut() -> anyhow::Result<Option<Run<T>>>,
    mut baseline: impl FnMut() -> anyhow::Result<Option<Run<T>>>,
) -> anyhow::Result<(Runs<T>, Runs<T>)> {
    let mut sides: [(&str, Attempt<'_, T>); 2] =
        [("keel", &mut keel), ("hand-written", &mut baseline)];
    let [k, b] = alternate_sides(label, repeat, &mut sides, false)?;
    Ok((k, b))
}

/// As [`alternate`], with keel's run with the N+1 guard on as a third side.
/// Plain keel and keel with the guard swap places every other round, so
/// neither always runs on the other's warm caches.
fn alternate_guarded<T: Display>(
    label: &str,
    repeat: u32,
    mut keel: impl FnMut() -> anyhow::Result<Option<Run<T>>>,
    mut guarded: impl FnMut() -> anyhow::Result<Option<Run<T>>>,
    mut baseline: impl FnMut() -> anyhow::Result<Option<Run<T>>>,
) -> anyhow::Result<(Runs<T>, Runs<T>, Runs<T>)> {
    let mut sides: [(&str, Attempt<'_, T>); 3] = [
        ("keel", &mut keel),
        ("keel + guard", &mut guarded),
        ("hand-written", &mut baseline),
    ];
    let [k, g, b] = alternate_sides(label, repeat, &mut sides, true)?;
    Ok((k, g, b))
}

/// Runs every side once per round, `repeat` rounds, printing each run; with
/// `swap_first_pair`, the first two sides run in the other order in even
/// rounds. A side that does not run the step (`None`) gives `None`.
fn alternate_sides<T: Display, const N: usize>(
    label: &str,
    repeat: u32,
    sides: &mut [(&str, Attempt<'_, T>); N],
    swap_first_pair: bool,
) -> anyhow::Result<[Runs<T>; N]> {
    let mut all: [Runs<T>; N] = std::array::from_fn(|_| Some(Vec::new()));
    for i in 1..=repeat {
        let mut order: [usize; N] = std::array::from_fn(|k| k);
        if swap_first_pair && i % 2 == 0 && N >= 2 {
            order.swap(0, 1);
        }
        for index in order {
            let (name, f) = &mut sides[index];
            let Some(collected) = all[index].as_mut() else {
                continue;
            };
            match f().with_context(|| format!("{label} {name}"))? {
                Some(run) => {
                    eprintln!(
                        "  {label} {name} run {i}: {} s, {} statements, {}",
                        report::seconds(run.elapsed.as_secs_f64()),
                        run.statements,
                        run.checksum
                    );
                    collected.push(run);
                }
                None => all[index] = None,
            }
        }
    }
    Ok(all)
}

/// A guarded run as a plain run, its scopes' tally kept in `tallies` (in
/// run order).
fn keep_tally<T>(
    guarded: anyhow::Result<Option<Guarded<T>>>,
    tallies: &mut Vec<ScopeTally>,
) -> anyhow::Result<Option<Run<T>>> {
    Ok(guarded?.map(|(run, tally)| {
        tallies.push(tally);
        run
    }))
}

/// The guard must have seen every statement of its runs, without a false
/// alarm; anything else makes its overhead meaningless, and is a failure.
fn check_scopes<T>(
    label: &str,
    driver: &str,
    runs: &[Run<T>],
    tallies: &[ScopeTally],
    failures: &mut Vec<String>,
) {
    if runs.len() != tallies.len() {
        failures.push(format!(
            "{label} {driver}: {} runs but {} scope tallies",
            runs.len(),
            tallies.len()
        ));
    }
    for (i, (run, tally)) in runs.iter().zip(tallies).enumerate() {
        if tally.statements != run.statements || tally.repeated != 0 {
            failures.push(format!(
                "{label} {driver} run {}: {} scopes recorded {} of the {} statements sent; \
                 {} flagged a repeated statement",
                i + 1,
                tally.scopes,
                tally.statements,
                run.statements,
                tally.repeated
            ));
        }
    }
}

fn write_outputs(args: &Args, report: &Report) -> anyhow::Result<()> {
    let dir = &args.out_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let json = dir.join("results.json");
    std::fs::write(&json, serde_json::to_string_pretty(report)?)
        .with_context(|| format!("writing {}", json.display()))?;
    let chart_file = "ratios.svg";
    let subtitle = format!(
        "U={} P={} C={}",
        report.workload.users, report.workload.posts_per_user, report.workload.comments_per_post
    );
    chart::write_ratio_chart(
        &dir.join(chart_file),
        &report.results,
        &report.http,
        &subtitle,
    )
    .context("drawing the chart")?;
    let summary = dir.join("summary.md");
    std::fs::write(&summary, report::markdown(report, chart_file))
        .with_context(|| format!("writing {}", summary.display()))?;
    eprintln!(
        "keel-bench: wrote {}, {} and {}",
        json.display(),
        summary.display(),
        dir.join(chart_file).display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run at U=30, P=3, C=2 with one repeat (the guard's too), reports in
    /// `out_dir`.
    fn small_run(out_dir: &std::path::Path, extra: &[&str]) -> Report {
        let out_dir = out_dir.display().to_string();
        let mut argv = vec![
            "keel-bench",
            "--users",
            "30",
            "--posts-per-user",
            "3",
            "--repeat",
            "1",
            "--guard-repeat",
            "1",
            "--http-requests",
            "300",
            "--http-connections",
            "8",
            "--out-dir",
        ];
        argv.push(&out_dir);
        argv.extend_from_slice(extra);
        let args = Args::try_parse_from(argv).expect("arguments parse");
        run(&args).expect("the bench runs")
    }

    #[test]
    fn a_small_sqlite_run_passes_every_checksum_and_writes_its_reports() {
        let dir = tempfile::tempdir().expect("temp dir");
        let report = small_run(dir.path(), &["--backend", "sqlite"]);
        assert!(
            report.checksum_failures.is_empty(),
            "{:?}",
            report.checksum_failures
        );
        // B1-B5 in both modes; B6 and B7 are PostgreSQL's.
        assert_eq!(report.results.len(), 10);
        assert!(report.results.iter().all(|r| r.ratio.is_some()));
        // The N+1 guard is measured on B2 and B4 in both modes, and only there.
        let guarded: Vec<Step> = report
            .results
            .iter()
            .filter(|r| r.guard.is_some())
            .map(|r| r.step)
            .collect();
        assert_eq!(guarded, [Step::B2, Step::B4, Step::B2, Step::B4]);
        check_http(&report, "sqlite");
        for file in ["results.json", "summary.md", "ratios.svg"] {
            assert!(dir.path().join(file).is_file(), "{file} written");
        }
        assert!(
            !dir.path().join("work").exists(),
            "the SQLite work files are removed"
        );
    }

    /// H1 and H2 ran on `backend`, every request answered on both sides,
    /// and a sample of bodies compared equal before timing.
    fn check_http(report: &Report, backend: &str) {
        let steps: Vec<http::HttpStep> = report.http.iter().map(|r| r.step).collect();
        assert_eq!(steps, [http::HttpStep::H1, http::HttpStep::H2]);
        for r in &report.http {
            assert_eq!(r.backend, backend);
            assert_eq!((r.keel.requests, r.baseline.requests), (300, 300));
            assert!(r.bodies_compared > 0 && r.ratio > 0.0, "{r:?}");
            assert!(r.keel.p50_ms <= r.keel.p99_ms && r.baseline.p50_ms <= r.baseline.p99_ms);
        }
    }

    #[test]
    fn a_small_postgres_run_passes_every_checksum() {
        let server = std::env::var("KEEL_TEST_PG_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned());
        let admin = keel_migrations::PostgresUrl::parse(&server)
            .and_then(|server| server.with_dbname("postgres"))
            .expect("KEEL_TEST_PG_URL is a PostgreSQL URL");
        if let Err(error) = postgres::Client::connect(admin.as_connection_str(), postgres::NoTls) {
            assert!(
                !keel_tests::in_ci(),
                "CI is set and PostgreSQL is unreachable: {error}"
            );
            eprintln!("\n!!! SKIPPED: PostgreSQL at {admin} is unreachable ({error}).\n");
            return;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let report = small_run(dir.path(), &["--backend", "postgres", "--pg-url", &server]);
        assert!(
            report.checksum_failures.is_empty(),
            "{:?}",
            report.checksum_failures
        );
        // B1-B5 and B7 in both modes, B6 in async mode.
        assert_eq!(report.results.len(), 13);
        let b6 = report
            .results
            .iter()
            .find(|r| r.step == Step::B6)
            .expect("B6 ran");
        assert_eq!(b6.keel.as_ref().map(|k| k.statements), Some(10_000));
        assert!(report.machine.postgres.is_some());
        check_http(&report, "postgres");
    }
}
