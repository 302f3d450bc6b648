//! The blocking API: a pooled [`Database`] (r2d2), its repositories, and
//! transactions in which several repository calls share one connection.

mod database;
mod repositories;
mod session;

pub use database::{Database, Transaction};
pub use repositories::{CommentRepository, PostRepository, UserRepository};
pub use session::Session;

use crate::RepoError;
use crate::ops::BlockingOps;

/// Where a repository gets its connection: a pool (one checkout per call)
/// or an open transaction (its connection, for every call).
pub(crate) trait Executor {
    /// Runs `f` on a connection. Not generic, so repositories can hold
    /// `&dyn Executor`; [`run`] carries the result out.
    fn with_ops(
        &self,
        f: &mut dyn FnMut(&mut dyn BlockingOps) -> Result<(), RepoError>,
    ) -> Result<(), RepoError>;
}

/// Runs `f` on `executor`'s connection and returns what it returns.
pub(crate) fn run<R>(
    executor: &dyn Executor,
    f: impl FnOnce(&mut dyn BlockingOps) -> Result<R, RepoError>,
) -> Result<R, RepoError> {
    let mut f = Some(f);
    let mut output = None;
    executor.with_ops(&mut |ops| {
        if let Some(f) = f.take() {
            output = Some(f(ops)?);
        }
        Ok(())
    })?;
    output.ok_or_else(|| RepoError::Connection("the connection was not handed to the call".into()))
}
