//! Read replicas of a PostgreSQL primary: which one a read goes to, whether
//! it has replayed the caller's last write (read-your-writes by LSN), and
//! which ones are healthy enough to take reads at all.
