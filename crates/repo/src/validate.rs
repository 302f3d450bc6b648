//! Input checks that run before any SQL, for table modules (keel's and a
//! service's own): what the columns can hold, so a bad
//! value gets a `Validation` error naming the field, on every backend (SQLite
//! would store an over-long VARCHAR; PostgreSQL rejects NUL bytes in text).

use crate::RepoError;

/// Checks a required text column: not blank, at most `max` characters.
pub fn required_text(
    field: &'static str,
    value: &str,
    max: Option<usize>,
) -> Result<(), RepoError> {
    if value.trim().is_empty() {
        return Err(RepoError::validation(field, "must not be empty"));
    }
    optional_text(field, value, max)
}

/// Checks a text column that may be empty or absent: length and NUL bytes.
pub fn optional_text<'v>(
    field: &'static str,
    value: impl Into<Option<&'v str>>,
    max: Option<usize>,
) -> Result<(), RepoError> {
    let Some(value) = value.into() else {
        return Ok(());
    };
    if value.contains('\0') {
        return Err(RepoError::validation(field, "must not contain NUL bytes"));
    }
    // A character takes at least one byte, so only a value longer in bytes
    // than `max` needs its characters counted.
    if let Some(max) = max
        && value.len() > max
    {
        let chars = value.chars().count();
        if chars > max {
            return Err(RepoError::validation(
                field,
                format!("is {chars} characters long; at most {max} fit"),
            ));
        }
    }
    Ok(())
}

/// An address of the form `local@domain.tld`, no spaces, at most 120 characters.
pub fn email(value: &str) -> Result<(), RepoError> {
    required_text("email", value, Some(120))?;
    let shaped = value.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty()
            && !domain.contains('@')
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
    }) && !contains_whitespace(value);
    if shaped {
        Ok(())
    } else {
        Err(RepoError::validation(
            "email",
            "is not an email address (expected name@domain.tld)",
        ))
    }
}

/// Whether `value` holds any whitespace (`char::is_whitespace`). Lookups by
/// email check this on every call; an ASCII value is checked byte by byte,
/// without decoding characters.
fn contains_whitespace(value: &str) -> bool {
    if value.is_ascii() {
        value.bytes().any(|b| matches!(b, b'\t'..=b'\r' | b' '))
    } else {
        value.chars().any(char::is_whitespace)
    }
}

/// A key that names a row: ids start at 1.
pub fn id(field: &'static str, value: i32) -> Result<(), RepoError> {
    if value < 1 {
        return Err(RepoError::validation(
            field,
            format!("{value} is not a valid id (ids start at 1)"),
        ));
    }
    Ok(())
}

/// A page size: 1 to `max`.
pub fn limit(value: i64, max: i64) -> Result<(), RepoError> {
    if (1..=max).contains(&value) {
        Ok(())
    } else {
        Err(RepoError::validation(
            "limit",
            format!("{value} is out of range (1 to {max})"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_need_a_local_part_and_a_dotted_domain() {
        for good in ["a@b.co", "user1@example.com", "ünï@例え.jp"] {
            assert!(email(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "plain",
            "@b.co",
            "a@b",
            "a@.co",
            "a@b.",
            "a b@c.de",
            "a\tb@c.de",
            "a\u{0B}b@c.de",
            "a@c.de\r",
            "ünï\u{A0}x@例え.jp",
            "a@b@c.de",
            "a\0@b.co",
        ] {
            assert!(
                matches!(
                    email(bad),
                    Err(RepoError::Validation { field: "email", .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn lengths_count_characters_not_bytes() {
        assert!(required_text("title", &"é".repeat(200), Some(200)).is_ok());
        assert!(required_text("title", &"é".repeat(201), Some(200)).is_err());
        assert!(required_text("title", "   ", Some(200)).is_err());
        assert!(required_text("title", &"ab".repeat(100), Some(200)).is_ok());
        assert!(required_text("title", &"ab".repeat(101), Some(200)).is_err());
    }
}
