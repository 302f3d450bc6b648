//! `embed_migrations!` reads the SQL at compile time but does not tell cargo
//! about it: without this, editing a migration would not rebuild the crate.

fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
