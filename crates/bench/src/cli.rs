//! The command line: sizes, which backends, modes and steps, repeats, where
//! PostgreSQL is and where the reports go.

use std::path::PathBuf;

use clap::{ArgAction, Parser, ValueEnum};

use crate::http::HttpStep;
use crate::steps::{Backend, Mode, Step};

/// Runs the workload's steps (docs/workload.md) through keel-repo and through
/// hand-written SQL on the plain drivers, verifies every checksum, and reports
/// keel's time over the hand-written time per step. Exits 1 on any checksum
/// mismatch.
#[derive(Debug, Parser)]
#[command(name = "keel-bench", version)]
pub struct Args {
    /// U: users to insert.
    #[arg(long, default_value_t = 10_000)]
    pub users: i64,
    /// P: posts per user.
    #[arg(long, default_value_t = 10)]
    pub posts_per_user: i64,
    /// C: comments per post.
    #[arg(long, default_value_t = 2)]
    pub comments_per_post: i64,
    /// Which database(s) to run on.
    #[arg(long, value_enum, default_value_t = BackendChoice::All)]
    pub backend: BackendChoice,
    /// Which keel-repo mode(s) to run.
    #[arg(long, value_enum, default_value_t = ModeChoice::All)]
    pub mode: ModeChoice,
    /// Steps to run, comma-separated (B6 runs in async mode on PostgreSQL
    /// only, B7 on PostgreSQL only).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        ignore_case = true,
        default_value = "B1,B2,B3,B4,B5,B6,B7"
    )]
    pub steps: Vec<Step>,
    /// Runs of each step B1-B6; the best is reported, with every run. Each
    /// B1 run loads fresh tables; B7, a reference, runs once. [default: 3]
    #[arg(long = "repeat", value_parser = clap::value_parser!(u32).range(1..))]
    pub repeat_arg: Option<u32>,
    /// Also run keel's B2 and B4 with the N+1 guard on (every unit of work
    /// in a `QueryScope`, as `keel serve` runs each request) and report its
    /// overhead over plain keel. On by default; `--guard false` skips it.
    #[arg(
        long,
        default_value_t = true,
        action = ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub guard: bool,
    /// Rounds of B2 and B4 while the guard is measured: keel, keel with the
    /// guard and the hand-written side alternate this many times (or
    /// `--repeat` times, if more), as the overhead to see is a few percent.
    /// [default: 7, or --repeat when that is given]
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub guard_repeat: Option<u32>,
    /// The PostgreSQL server; the bench creates a database of its own there
    /// (uniquely named) and drops it at the end.
    #[arg(
        long,
        env = "KEEL_BENCH_PG_URL",
        default_value = "postgres://postgres@127.0.0.1:5432"
    )]
    pub pg_url: String,
    /// Timed requests per side of each HTTP step (H1, H2: keel serve's
    /// router beside a hand-written axum router, on each backend after its
    /// B steps); 0 skips them.
    #[arg(long, default_value_t = 20_000)]
    pub http_requests: usize,
    /// Concurrent keep-alive connections of the HTTP load.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    pub http_connections: u16,
    /// Rounds each HTTP step's requests are split into, the two sides
    /// taking turns, so that the machine's drift during a step weighs on
    /// both alike.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u16).range(1..))]
    pub http_rounds: u16,
    /// Which HTTP steps run.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [HttpStep::H1, HttpStep::H2])]
    pub http_steps: Vec<HttpStep>,
    /// Drive one side's router alone (no comparison, no ratio, no CPU
    /// clock), for a profiler: `valgrind --tool=callgrind keel-bench
    /// --http-profile keel ...` against the same with `hand-written`; the
    /// difference of the two totals over the requests is one side's extra
    /// work per request (see BENCHMARKS.md, "HTTP, fourth pass").
    #[arg(long, value_enum)]
    pub http_profile: Option<HttpSideChoice>,
    /// Whether keel's access log (its line per request) is on during the
    /// HTTP steps, as `keel serve` has it by default; `false` filters it
    /// off as `RUST_LOG=info,keel::serve::access=off` does, to measure what
    /// the line costs.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub http_access_log: bool,
    /// Where the JSON, Markdown and SVG reports are written.
    #[arg(long, default_value = "target/bench")]
    pub out_dir: PathBuf,
}

/// One side of the HTTP steps, as `--http-profile` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HttpSideChoice {
    /// keel serve's router.
    Keel,
    /// The hand-written axum router.
    HandWritten,
}

/// `--repeat` when not given.
pub const DEFAULT_REPEAT: u32 = 3;
/// `--guard-repeat` when neither it nor `--repeat` is given.
pub const DEFAULT_GUARD_REPEAT: u32 = 7;

/// `--backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    /// SQLite only.
    Sqlite,
    /// PostgreSQL only.
    Postgres,
    /// Both.
    All,
}

/// `--mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeChoice {
    /// keel-repo's blocking API (r2d2).
    Sync,
    /// keel-repo's async API (diesel-async, deadpool).
    Async,
    /// Both.
    All,
}

impl Args {
    /// The backends to run, SQLite first.
    pub fn backends(&self) -> Vec<Backend> {
        match self.backend {
            BackendChoice::Sqlite => vec![Backend::Sqlite],
            BackendChoice::Postgres => vec![Backend::Postgres],
            BackendChoice::All => vec![Backend::Sqlite, Backend::Postgres],
        }
    }

    /// The modes to run, sync first.
    pub fn modes(&self) -> Vec<Mode> {
        match self.mode {
            ModeChoice::Sync => vec![Mode::Sync],
            ModeChoice::Async => vec![Mode::Async],
            ModeChoice::All => vec![Mode::Sync, Mode::Async],
        }
    }

    /// `--repeat`: runs of each read step.
    pub fn repeat(&self) -> u32 {
        self.repeat_arg.unwrap_or(DEFAULT_REPEAT)
    }

    /// Rounds of B2 and B4 when the guard is measured: `--guard-repeat`, at
    /// least `--repeat`. Without either flag, [`DEFAULT_GUARD_REPEAT`]; with
    /// `--repeat` alone, `--repeat` (so `--repeat 1` stays a quick smoke run).
    pub fn guard_rounds(&self) -> u32 {
        let asked = match (self.guard_repeat, self.repeat_arg) {
            (Some(rounds), _) => rounds,
            (None, Some(repeat)) => repeat,
            (None, None) => DEFAULT_GUARD_REPEAT,
        };
        asked.max(self.repeat())
    }

    /// Rounds of `step`: `--repeat`, or [`Args::guard_rounds`] for the steps
    /// whose guard overhead is measured.
    pub fn rounds(&self, step: Step) -> u32 {
        if self.guard && matches!(step, Step::B2 | Step::B4) {
            self.guard_rounds()
        } else {
            self.repeat()
        }
    }

    /// The steps asked for, in step order, each once.
    pub fn selected_steps(&self) -> Vec<Step> {
        let mut steps = self.steps.clone();
        steps.sort();
        steps.dedup();
        steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_run_everything() {
        let args = Args::try_parse_from(["keel-bench"]).expect("defaults parse");
        assert_eq!(
            (args.users, args.posts_per_user, args.comments_per_post),
            (10_000, 10, 2)
        );
        assert_eq!(args.backends(), [Backend::Sqlite, Backend::Postgres]);
        assert_eq!(args.modes(), [Mode::Sync, Mode::Async]);
        assert_eq!(args.selected_steps().len(), 7);
        assert_eq!(args.repeat(), 3);
        assert!(args.guard);
        assert_eq!(args.rounds(Step::B2), 7);
        assert_eq!(args.rounds(Step::B3), 3);
        assert_eq!(args.http_steps, [HttpStep::H1, HttpStep::H2]);
        assert_eq!(args.http_profile, None);
        assert!(args.http_access_log);
    }

    #[test]
    fn the_access_log_can_be_filtered_off() {
        let off =
            Args::try_parse_from(["keel-bench", "--http-access-log", "false"]).expect("parses");
        assert!(!off.http_access_log);
        assert!(Args::try_parse_from(["keel-bench", "--http-access-log", "maybe"]).is_err());
    }

    #[test]
    fn one_http_side_can_be_profiled_alone() {
        let args = Args::try_parse_from([
            "keel-bench",
            "--http-steps",
            "h1",
            "--http-profile",
            "hand-written",
        ])
        .expect("parses");
        assert_eq!(args.http_steps, [HttpStep::H1]);
        assert_eq!(args.http_profile, Some(HttpSideChoice::HandWritten));
        assert!(Args::try_parse_from(["keel-bench", "--http-profile", "both"]).is_err());
    }

    #[test]
    fn the_guard_can_be_turned_off() {
        let on = Args::try_parse_from(["keel-bench", "--guard"]).expect("parses");
        assert!(on.guard);
        let off = Args::try_parse_from(["keel-bench", "--guard", "false", "--repeat", "2"])
            .expect("parses");
        assert!(!off.guard);
        assert_eq!(off.rounds(Step::B4), 2);
        let more = Args::try_parse_from(["keel-bench", "--repeat", "9"]).expect("parses");
        assert_eq!(more.rounds(Step::B4), 9);
        // --repeat alone sets the guard's rounds too: a smoke run stays quick.
        let smoke = Args::try_parse_from(["keel-bench", "--repeat", "1"]).expect("parses");
        assert_eq!((smoke.rounds(Step::B2), smoke.rounds(Step::B5)), (1, 1));
        let both = Args::try_parse_from(["keel-bench", "--repeat", "2", "--guard-repeat", "5"])
            .expect("parses");
        assert_eq!((both.rounds(Step::B2), both.rounds(Step::B3)), (5, 2));
        let fewer = Args::try_parse_from(["keel-bench", "--repeat", "4", "--guard-repeat", "2"])
            .expect("parses");
        assert_eq!(fewer.rounds(Step::B4), 4);
    }

    #[test]
    fn steps_parse_in_any_case_and_order() {
        let args = Args::try_parse_from(["keel-bench", "--steps", "b4,B2,B4", "--mode", "async"])
            .expect("parses");
        assert_eq!(args.selected_steps(), [Step::B2, Step::B4]);
        assert_eq!(args.modes(), [Mode::Async]);
        assert!(Args::try_parse_from(["keel-bench", "--steps", "B9"]).is_err());
        assert!(Args::try_parse_from(["keel-bench", "--repeat", "0"]).is_err());
    }
}
