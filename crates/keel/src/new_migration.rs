//! `keel migrate new NAME`: one migration for both backends, as a pair of
//! folders with the same version, `migrations/postgres/<version>_<name>/`
//! and `migrations/sqlite/<version>_<name>/`, each with `up.sql` and
//! `down.sql`. Writing the two by hand is how the names drift apart.

use std::fmt;

use chrono::Timelike as _;
use std::path::{Path, PathBuf};

/// The backends' folders under the migrations directory, in the order the
/// files are written.
const BACKENDS: [&str; 2] = ["postgres", "sqlite"];

/// Longest name accepted: diesel's version prefix is 22 characters more.
const MAX_NAME_LEN: usize = 60;

/// Names that say nothing of what the migration does.
const VAGUE_WORDS: [&str; 10] = [
    "change",
    "changes",
    "fix",
    "migration",
    "misc",
    "new",
    "stuff",
    "temp",
    "test",
    "update",
];

/// Why `keel migrate new` did not create the migration. Nothing is written
/// when it fails.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NewMigrationError {
    /// The name breaks a rule; the reason says which.
    #[error("migration name `{name}`: {reason}")]
    BadName {
        /// The name as given.
        name: String,
        /// The rule it breaks.
        reason: String,
    },
    /// The migrations directory lacks a backend's folder.
    #[error(
        "no folder `{}`: run this from the workspace root, or pass --dir with the folder that holds postgres/ and sqlite/",
        .0.display()
    )]
    MissingBackendFolder(PathBuf),
    /// A migration of that name exists already.
    #[error("a migration named `{name}` exists already: `{existing}`")]
    Exists {
        /// The name as given.
        name: String,
        /// The folder that has it.
        existing: String,
    },
    /// The files could not be written.
    #[error("cannot write `{}`: {source}", path.display())]
    Io {
        /// What was being written.
        path: PathBuf,
        /// Why not.
        source: std::io::Error,
    },
}

/// A migration created on disk.
#[derive(Debug)]
pub(crate) struct NewMigration {
    /// `<version>_<name>`, the same on both backends.
    pub(crate) folder: String,
    /// The `up.sql` and `down.sql` of each backend.
    pub(crate) files: Vec<PathBuf>,
}

impl fmt::Display for NewMigration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "created {} on both backends:", self.folder)?;
        for file in &self.files {
            writeln!(f, "  {}", file.display())?;
        }
        write!(
            f,
            "write each backend's SQL, then `keel migrate run` (after a rebuild: the binary embeds them)"
        )
    }
}

/// Checks that `name` says what the migration does: lowercase words of
/// letters and digits joined by single underscores, at least two words (a
/// verb and what it acts on: `create_tags`, `add_parent_to_comments`).
pub(crate) fn check_name(name: &str) -> Result<(), NewMigrationError> {
    let bad = |reason: &str| NewMigrationError::BadName {
        name: name.to_owned(),
        reason: reason.to_owned(),
    };
    if name.is_empty() {
        return Err(bad("it is empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(bad(&format!("it is longer than {MAX_NAME_LEN} characters")));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(bad(
            "use lowercase ASCII letters, digits and underscores only (`create_tags`)",
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(bad("it must start with a letter"));
    }
    let words: Vec<&str> = name.split('_').collect();
    if words.iter().any(|word| word.is_empty()) {
        return Err(bad(
            "join words with single underscores, none leading or trailing",
        ));
    }
    if words.len() < 2 {
        return Err(bad(
            "say what it does in at least two words, a verb and what it acts on (`create_tags`)",
        ));
    }
    if words.iter().all(|word| VAGUE_WORDS.contains(word)) {
        return Err(bad("say what it changes (`add_parent_to_comments`)"));
    }
    Ok(())
}

/// The folder names under `backend_dir` (`<version>_<name>`).
fn folders(backend_dir: &Path) -> Result<Vec<String>, NewMigrationError> {
    let entries = std::fs::read_dir(backend_dir).map_err(|source| NewMigrationError::Io {
        path: backend_dir.to_owned(),
        source,
    })?;
    Ok(entries
        .filter_map(Result::ok)
        .filter(|entry| entry.path().is_dir())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect())
}

/// diesel's version format, `YYYY-MM-DD-HHMMSS-0000`, for `time`.
fn version_at(time: chrono::DateTime<chrono::Utc>) -> String {
    time.format("%Y-%m-%d-%H%M%S-0000").to_string()
}

/// Creates the pair for `name` under `dir`, versioned `now` or, if a
/// migration is already at or past `now` (a clock behind, a teammate's
/// future-dated folder), one second after the newest, so the new one
/// always runs last.
pub(crate) fn create(
    dir: &Path,
    name: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<NewMigration, NewMigrationError> {
    check_name(name)?;
    let mut newest = None;
    for backend in BACKENDS {
        let backend_dir = dir.join(backend);
        if !backend_dir.is_dir() {
            return Err(NewMigrationError::MissingBackendFolder(backend_dir));
        }
        for folder in folders(&backend_dir)? {
            let Some((version, existing_name)) = folder.split_at_checked(22) else {
                continue;
            };
            if existing_name.strip_prefix('_') == Some(name) {
                return Err(NewMigrationError::Exists {
                    name: name.to_owned(),
                    existing: format!("{backend}/{folder}"),
                });
            }
            let parsed = chrono::NaiveDateTime::parse_from_str(version, "%Y-%m-%d-%H%M%S-0000");
            if let Ok(time) = parsed {
                newest = newest.max(Some(time.and_utc()));
            }
        }
    }
    // Versions have whole seconds: compare in whole seconds, or a second
    // migration made within the same second would get the same version.
    let now = now.with_nanosecond(0).unwrap_or(now);
    let time = match newest {
        Some(newest) if newest >= now => newest + chrono::TimeDelta::seconds(1),
        _ => now,
    };
    let folder = format!("{}_{name}", version_at(time));

    let mut files = Vec::new();
    for backend in BACKENDS {
        let path = dir.join(backend).join(&folder);
        std::fs::create_dir(&path).map_err(|source| NewMigrationError::Io {
            path: path.clone(),
            source,
        })?;
        for (file, text) in [
            ("up.sql", up_template(name, backend)),
            ("down.sql", down_template(name, backend)),
        ] {
            let path = path.join(file);
            std::fs::write(&path, text).map_err(|source| NewMigrationError::Io {
                path: path.clone(),
                source,
            })?;
            files.push(path);
        }
    }
    Ok(NewMigration { folder, files })
}

fn up_template(name: &str, backend: &str) -> String {
    format!(
        "-- {name} ({backend}): the change. The other backend's folder of the same\n\
         -- version holds the same change in its dialect; down.sql undoes this one.\n"
    )
}

fn down_template(name: &str, backend: &str) -> String {
    format!(
        "-- {name} ({backend}): undo exactly what up.sql does, so that up, down and\n\
         -- up again leave the same schema.\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> chrono::DateTime<chrono::Utc> {
        chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
            .expect("a time")
            .and_utc()
    }

    fn workspace() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        for backend in BACKENDS {
            std::fs::create_dir(dir.path().join(backend)).expect("backend folder");
        }
        dir
    }

    #[test]
    fn names_must_say_what_the_migration_does() {
        for good in ["create_tags", "add_parent_to_comments", "index_posts_2026"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("tags", "two words"),
            ("Create_tags", "lowercase"),
            ("create-tags", "lowercase"),
            ("create tags", "lowercase"),
            ("create__tags", "single underscores"),
            ("_create_tags", "start with a letter"),
            ("create_tags_", "single underscores"),
            ("2_create_tags", "start with a letter"),
            ("misc_changes", "what it changes"),
            ("créer_tags", "lowercase"),
        ] {
            let error = check_name(bad).expect_err(bad).to_string();
            assert!(error.contains(why), "{bad}: {error}");
        }
        assert!(check_name(&"a_".repeat(40)).is_err());
    }

    #[test]
    fn both_backends_get_the_same_version_and_name() {
        let dir = workspace();
        let made = create(dir.path(), "create_tags", at("2026-12-01 10:20:30")).expect("created");
        assert_eq!(made.folder, "2026-12-01-102030-0000_create_tags");
        for backend in BACKENDS {
            for file in ["up.sql", "down.sql"] {
                let path = dir.path().join(backend).join(&made.folder).join(file);
                let text = std::fs::read_to_string(&path).expect("file written");
                assert!(text.contains("create_tags"), "{}", path.display());
            }
        }
        assert_eq!(made.files.len(), 4);
    }

    #[test]
    fn a_new_migration_always_sorts_last() {
        let dir = workspace();
        std::fs::create_dir(
            dir.path()
                .join("postgres/2030-01-01-000000-0000_create_users"),
        )
        .expect("future-dated folder");
        let made = create(dir.path(), "create_tags", at("2026-12-01 10:20:30")).expect("created");
        assert_eq!(made.folder, "2030-01-01-000001-0000_create_tags");
    }

    #[test]
    fn two_made_within_one_second_get_two_versions() {
        let dir = workspace();
        let at_fraction =
            |millis| at("2026-12-01 10:20:30") + chrono::TimeDelta::milliseconds(millis);
        let first = create(dir.path(), "create_tags", at_fraction(100)).expect("first");
        let second = create(dir.path(), "create_labels", at_fraction(400)).expect("second");
        assert_eq!(first.folder, "2026-12-01-102030-0000_create_tags");
        assert_eq!(second.folder, "2026-12-01-102031-0000_create_labels");
    }

    #[test]
    fn refusals_write_nothing() {
        let dir = workspace();
        create(dir.path(), "create_tags", at("2026-12-01 10:20:30")).expect("created");
        let again = create(dir.path(), "create_tags", at("2026-12-02 10:20:30"));
        assert!(
            matches!(again, Err(NewMigrationError::Exists { .. })),
            "{again:?}"
        );
        assert!(create(dir.path(), "Tags", at("2026-12-02 10:20:30")).is_err());
        for backend in BACKENDS {
            assert_eq!(folders(&dir.path().join(backend)).expect("list").len(), 1);
        }
        let missing = tempfile::tempdir().expect("temp dir");
        assert!(matches!(
            create(missing.path(), "create_tags", at("2026-12-02 10:20:30")),
            Err(NewMigrationError::MissingBackendFolder(_))
        ));
    }
}
