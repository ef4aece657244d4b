//! static/ is embedded in the binary (src/web/static_files.rs). The compiler
//! notices a changed file there by itself, but not a new or removed one: this
//! makes cargo rebuild when anything under static/ changes.

fn main() {
    println!("cargo:rerun-if-changed=static");
}
