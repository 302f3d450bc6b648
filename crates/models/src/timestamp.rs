//! How the read structs take a `TIMESTAMP` column: [`StoredTimestamp`],
//! a `NaiveDateTime` read directly from SQLite's usual text.
//!
//! SQLite keeps timestamps as text. diesel's reader tries chrono format
//! strings in turn and interprets each format anew for every value: about
//! 1,800 instructions for `2026-11-30 12:34:56`, a tenth of a whole point
//! lookup on SQLite (callgrind, keel-bench B4). keel's rows hold exactly
//! that form (SQLite's `CURRENT_TIMESTAMP`, and diesel's own encoding with
//! a fraction), so it is read field by field; any other form goes to
//! diesel's reader, which accepts all it did before. PostgreSQL sends a
//! binary timestamp and is read by diesel as always.

use chrono::{NaiveDate, NaiveDateTime};
use diesel::backend::Backend;
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::pg::Pg;
use diesel::sql_types::Timestamp;
use diesel::sqlite::Sqlite;

/// A `TIMESTAMP` as read from either backend (the read structs'
/// `created_at` is deserialized through it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromSqlRow)]
pub struct StoredTimestamp(pub NaiveDateTime);

impl From<StoredTimestamp> for NaiveDateTime {
    fn from(stored: StoredTimestamp) -> Self {
        stored.0
    }
}

impl FromSql<Timestamp, Sqlite> for StoredTimestamp {
    fn from_sql(mut value: <Sqlite as Backend>::RawValue<'_>) -> deserialize::Result<Self> {
        if let Some(at) = canonical(value.read_text()) {
            return Ok(Self(at));
        }
        <NaiveDateTime as FromSql<Timestamp, Sqlite>>::from_sql(value).map(Self)
    }
}

impl FromSql<Timestamp, Pg> for StoredTimestamp {
    fn from_sql(value: <Pg as Backend>::RawValue<'_>) -> deserialize::Result<Self> {
        <NaiveDateTime as FromSql<Timestamp, Pg>>::from_sql(value).map(Self)
    }
}

/// `YYYY-MM-DD HH:MM:SS`, with an optional fraction of 1 to 9 digits; `None`
/// for anything else (other forms, out-of-range fields).
fn canonical(text: &str) -> Option<NaiveDateTime> {
    let bytes = text.as_bytes();
    let separators = [(4, b'-'), (7, b'-'), (10, b' '), (13, b':'), (16, b':')];
    if bytes.len() < 19 || separators.iter().any(|&(at, byte)| bytes[at] != byte) {
        return None;
    }
    let number = |digits: &[u8]| {
        digits.iter().try_fold(0u32, |n, &digit| {
            digit
                .is_ascii_digit()
                .then(|| n * 10 + u32::from(digit - b'0'))
        })
    };
    let nanos = match &bytes[19..] {
        [] => 0,
        [b'.', fraction @ ..] if (1..=9).contains(&fraction.len()) => {
            number(fraction)? * 10u32.pow(9 - fraction.len() as u32)
        }
        _ => return None,
    };
    let year = i32::try_from(number(&bytes[0..4])?).ok()?;
    NaiveDate::from_ymd_opt(year, number(&bytes[5..7])?, number(&bytes[8..10])?)?.and_hms_nano_opt(
        number(&bytes[11..13])?,
        number(&bytes[14..16])?,
        number(&bytes[17..19])?,
        nanos,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::{Connection, QueryableByName, RunQueryDsl, SqliteConnection};

    #[derive(QueryableByName)]
    struct Read {
        #[diesel(sql_type = Timestamp)]
        #[diesel(deserialize_as = StoredTimestamp)]
        fast: NaiveDateTime,
        #[diesel(sql_type = Timestamp)]
        diesel: NaiveDateTime,
    }

    /// The value as read through [`StoredTimestamp`], and as diesel reads it.
    fn both_readings(text: &str) -> (NaiveDateTime, NaiveDateTime) {
        let mut conn = SqliteConnection::establish(":memory:").expect("sqlite");
        let read: Read = diesel::sql_query("SELECT ?1 AS fast, ?1 AS diesel")
            .bind::<diesel::sql_types::Text, _>(text)
            .get_result(&mut conn)
            .expect("read");
        (read.fast, read.diesel)
    }

    #[test]
    fn every_form_reads_as_diesel_reads_it() {
        for text in [
            "2026-11-30 12:34:56",
            "2026-11-30 12:34:56.5",
            "2026-11-30 12:34:56.123456",
            "2026-11-30 12:34:56.123456789",
            "2024-02-29 00:00:00",
            // Not the canonical form: diesel's reader takes them.
            "2026-11-30T12:34:56",
            "2026-11-30 12:34:56Z",
            "2026-11-30 12:34:56+02:00",
            "2026-11-30 12:34",
            "2461009.5",
        ] {
            let (fast, diesel) = both_readings(text);
            assert_eq!(fast, diesel, "{text}");
        }
    }

    #[test]
    fn only_the_canonical_form_takes_the_short_path() {
        let at = |y, mo, d, h, mi, s, n| {
            NaiveDate::from_ymd_opt(y, mo, d).and_then(|date| date.and_hms_nano_opt(h, mi, s, n))
        };
        assert_eq!(
            canonical("2026-11-30 12:34:56"),
            at(2026, 11, 30, 12, 34, 56, 0)
        );
        assert_eq!(
            canonical("2026-11-30 12:34:56.25"),
            at(2026, 11, 30, 12, 34, 56, 250_000_000)
        );
        for other in [
            "2026-11-30T12:34:56",
            "2026-11-30 12:34:56Z",
            "2026-11-30 12:34:56.",
            "2026-11-30 12:34:56.1234567890",
            "2026-13-30 12:34:56",
            "2026-02-30 12:34:56",
            "2026-11-30 24:00:00",
            "2026-1a-30 12:34:56",
            "2026-11-30 12:34",
            "",
        ] {
            assert_eq!(canonical(other), None, "{other}");
        }
    }

    #[test]
    fn a_value_no_reader_accepts_is_an_error() {
        let mut conn = SqliteConnection::establish(":memory:").expect("sqlite");
        #[derive(QueryableByName, Debug)]
        struct Only {
            #[diesel(sql_type = Timestamp)]
            #[diesel(deserialize_as = StoredTimestamp)]
            #[allow(dead_code)]
            at: NaiveDateTime,
        }
        let read = diesel::sql_query("SELECT 'not a time' AS at").get_result::<Only>(&mut conn);
        assert!(read.is_err(), "{read:?}");
    }
}
