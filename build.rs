//! static/ and migrations/ are embedded in the binary (src/web/static_files.rs,
//! `sqlx::migrate!` in src/db/mod.rs). The compiler notices a changed file there
//! by itself, but not a new or removed one: this makes cargo rebuild when
//! anything under either directory changes (a new migration included).

fn main() {
    println!("cargo:rerun-if-changed=static");
    println!("cargo:rerun-if-changed=migrations");
}
